import { useMutation, useQuery } from "@connectrpc/connect-query";
import { type FormEvent, useEffect, useState } from "react";
import { useSearchParams } from "react-router";
import { AlertService, EmailProvider } from "../../../gen/myosicam/panel/v1/alert_pb.js";
import { type ApiClient, ApiClientService } from "../../../gen/myosicam/panel/v1/api_client_pb.js";
import { AuthService } from "../../../gen/myosicam/panel/v1/auth_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { FleetService } from "../../../gen/myosicam/panel/v1/fleet_pb.js";
import { type Operator, OperatorService } from "../../../gen/myosicam/panel/v1/operator_pb.js";
import { formatAgo, formatTime } from "../api/format";
import { hasRole, roleNames, useIdentity } from "../app/session";
import { Badge, ConfirmDialog, Empty, Outcome, ShownOnce, Tabs, scrollRegion } from "../ui/common";

const words = (text: string) => text.split(/[\s,]+/).filter(Boolean);
const assignable = [Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.OWNER];

/** Settings by role: one's own sign-in, operators, API clients, e-mail, liveness, license and approval. */
export function SettingsPage() {
  const identity = useIdentity();
  const [params, setParams] = useSearchParams();
  const tabs = [
    { id: "me", label: "My account" },
    ...(hasRole(identity, Role.ADMIN) ? [{ id: "operators", label: "Operators" }] : []),
    { id: "api-clients", label: "API clients" },
    ...(hasRole(identity, Role.ADMIN) ? [{ id: "email", label: "E-mail and alerts" }] : []),
    { id: "license", label: "License and approval" },
  ];
  const tab = tabs.find((t) => t.id === params.get("tab"))?.id ?? "me";
  return (
    <section aria-labelledby="settings-title">
      <h1 id="settings-title">Settings</h1>
      <Tabs tabs={tabs} current={tab} onChange={(id) => setParams({ tab: id })} />
      {tab === "me" && <MyAccount />}
      {tab === "operators" && <Operators />}
      {tab === "api-clients" && <ApiClients />}
      {tab === "email" && <EmailAndLiveness />}
      {tab === "license" && <License />}
    </section>
  );
}

function MyAccount() {
  const identity = useIdentity();
  const sessions = useQuery(AuthService.method.listSessions, {});
  const revoke = useMutation(AuthService.method.revokeSession, { onSuccess: () => void sessions.refetch() });
  const change = useMutation(AuthService.method.changePassword);
  const [current, setCurrent] = useState("");
  const [fresh, setFresh] = useState("");
  return (
    <>
      <p>
        Signed in as <strong>{identity.name}</strong> ({roleNames[identity.role]}). Session ends {formatAgo(identity.sessionIdleExpiresAt)} if unused, at the
        latest {formatTime(identity.sessionExpiresAt)}.
      </p>
      <form
        className="wizard"
        aria-label="Change password"
        onSubmit={(e: FormEvent) => {
          e.preventDefault();
          change.mutate(
            { currentPassword: current, newPassword: fresh },
            {
              onSuccess: () => {
                setCurrent("");
                setFresh("");
              },
            },
          );
        }}
      >
        <h2>Change password</h2>
        <label>
          Current password
          <input type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} required />
        </label>
        <label>
          New password (at least 12 characters)
          <input type="password" autoComplete="new-password" minLength={12} value={fresh} onChange={(e) => setFresh(e.target.value)} required />
        </label>
        <Outcome error={change.error} done={change.data ? "Password changed; your other sessions were ended." : undefined} />
        <button type="submit" disabled={change.isPending}>
          Change password
        </button>
      </form>
      <h2>My sessions</h2>
      <Outcome error={sessions.error ?? revoke.error} />
      <div {...scrollRegion("My sessions")}>
        <table>
          <thead>
            <tr>
              <th>Started</th>
              <th>Last used</th>
              <th>From</th>
              <th className="hide-narrow">Browser</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {sessions.data?.sessions.map((s) => (
              <tr key={s.id}>
                <td>{formatTime(s.createdAt)}</td>
                <td>{formatAgo(s.lastSeenAt)}</td>
                <td>{s.ip}</td>
                <td className="hide-narrow wrap">{s.userAgent}</td>
                <td>
                  {s.current ? (
                    "this one"
                  ) : (
                    <button type="button" onClick={() => revoke.mutate({ sessionId: s.id })}>
                      End
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

/** The roles the signed-in operator may give: up to their own. */
function RoleSelect({ role, onChange }: { role: Role; onChange(role: Role): void }) {
  const identity = useIdentity();
  return (
    <label>
      Role
      <select value={role} onChange={(e) => onChange(Number(e.target.value) as Role)}>
        {assignable
          .filter((r) => r <= identity.role)
          .map((r) => (
            <option key={r} value={r}>
              {roleNames[r]}
            </option>
          ))}
      </select>
    </label>
  );
}

function ScopeFields({ ids, tags, onIds, onTags }: { ids: string; tags: string; onIds(v: string): void; onTags(v: string): void }) {
  return (
    <fieldset>
      <legend>Server scope (both empty: every server)</legend>
      <label>
        Tags
        <input value={tags} onChange={(e) => onTags(e.target.value)} placeholder="eu-west customer-a" />
      </label>
      <label>
        Server ids
        <input value={ids} onChange={(e) => onIds(e.target.value)} />
      </label>
    </fieldset>
  );
}

const scopeText = (scope: { serverIds: string[]; tags: string[] } | undefined) =>
  scope && (scope.serverIds.length || scope.tags.length)
    ? [scope.tags.length ? `tags ${scope.tags.join(", ")}` : "", scope.serverIds.length ? `${scope.serverIds.length} servers` : ""].filter(Boolean).join(" + ")
    : "every server";

function Operators() {
  const identity = useIdentity();
  const list = useQuery(OperatorService.method.listOperators, {});
  const [editing, setEditing] = useState<Operator | "new">();
  const [secret, setSecret] = useState<{ email: string; password: string }>();
  const refetch = () => void list.refetch();
  const disable = useMutation(OperatorService.method.setOperatorDisabled, { onSuccess: refetch });
  const reset = useMutation(OperatorService.method.resetOperatorPassword, {
    onSuccess: (res) => setSecret({ email: res.operator?.email ?? "", password: res.oneTimePassword }),
  });
  const remove = useMutation(OperatorService.method.deleteOperator, { onSuccess: refetch });
  return (
    <>
      <div className="row">
        <h2>Operators</h2>
        <button type="button" className="primary" onClick={() => setEditing("new")}>
          Add operator
        </button>
      </div>
      {secret && <ShownOnce label={`One-time password for ${secret.email} (they choose their own at the first sign-in)`} value={secret.password} />}
      <Outcome error={list.error ?? disable.error ?? reset.error ?? remove.error} />
      <div {...scrollRegion("Operators")}>
        <table>
          <thead>
            <tr>
              <th>E-mail</th>
              <th>Role</th>
              <th>Scope</th>
              <th className="status">State</th>
              <th className="hide-narrow">Last sign-in</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.data?.operators.map((o) => (
              <tr key={o.id} data-operator={o.email}>
                <td>{o.email}</td>
                <td>{roleNames[o.role]}</td>
                <td>{scopeText(o.scope)}</td>
                <td className="status">
                  <Badge word={o.disabled ? "disabled" : o.mustChangePassword ? "pending" : "active"} />
                </td>
                <td className="hide-narrow">{formatAgo(o.lastLoginAt)}</td>
                <td className="row-actions">
                  {o.id !== identity.id && (
                    <>
                      <button type="button" onClick={() => setEditing(o)}>
                        Edit
                      </button>
                      <button type="button" onClick={() => disable.mutate({ operatorId: o.id, disabled: !o.disabled })}>
                        {o.disabled ? "Enable" : "Disable"}
                      </button>
                      <button type="button" onClick={() => reset.mutate({ operatorId: o.id })}>
                        Reset password
                      </button>
                      <button type="button" className="danger" onClick={() => remove.mutate({ operatorId: o.id })}>
                        Delete
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {editing && (
        <OperatorEditor
          operator={editing === "new" ? undefined : editing}
          onClose={() => setEditing(undefined)}
          onSaved={(created) => {
            setEditing(undefined);
            if (created) setSecret(created);
            refetch();
          }}
        />
      )}
    </>
  );
}

function OperatorEditor({
  operator,
  onClose,
  onSaved,
}: {
  operator?: Operator;
  onClose(): void;
  onSaved(created?: { email: string; password: string }): void;
}) {
  const [email, setEmail] = useState(operator?.email ?? "");
  const [role, setRole] = useState(operator?.role ?? Role.OPERATOR);
  const [ids, setIds] = useState(operator?.scope?.serverIds.join(" ") ?? "");
  const [tags, setTags] = useState(operator?.scope?.tags.join(" ") ?? "");
  const create = useMutation(OperatorService.method.createOperator);
  const update = useMutation(OperatorService.method.updateOperator);
  const scope = { serverIds: words(ids), tags: words(tags) };
  return (
    <ConfirmDialog
      open
      title={operator ? `Edit ${operator.email}` : "Add an operator"}
      confirmLabel={operator ? "Save" : "Add"}
      busy={create.isPending || update.isPending}
      onClose={onClose}
      onConfirm={() =>
        operator
          ? update.mutate({ operatorId: operator.id, role, scope }, { onSuccess: () => onSaved() })
          : create.mutate(
              { email: email.trim(), role, scope },
              { onSuccess: (res) => onSaved({ email: res.operator?.email ?? "", password: res.oneTimePassword }) },
            )
      }
    >
      {!operator && (
        <label>
          E-mail
          <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </label>
      )}
      <RoleSelect role={role} onChange={setRole} />
      <ScopeFields ids={ids} tags={tags} onIds={setIds} onTags={setTags} />
      <Outcome error={create.error ?? update.error} />
    </ConfirmDialog>
  );
}

function ApiClients() {
  const list = useQuery(ApiClientService.method.listApiClients, {});
  const [secret, setSecret] = useState<{ client: ApiClient; secret: string }>();
  const [creating, setCreating] = useState(false);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [role, setRole] = useState(Role.VIEWER);
  const [ids, setIds] = useState("");
  const [tags, setTags] = useState("");
  const refetch = () => void list.refetch();
  const create = useMutation(ApiClientService.method.createApiClient, {
    onSuccess: (res) => {
      setCreating(false);
      if (res.client) setSecret({ client: res.client, secret: res.secret });
      refetch();
    },
  });
  const rotate = useMutation(ApiClientService.method.rotateApiClientSecret, {
    onSuccess: (res) => {
      if (res.client) setSecret({ client: res.client, secret: res.secret });
      refetch();
    },
  });
  const revoke = useMutation(ApiClientService.method.revokeApiClient, { onSuccess: refetch });
  return (
    <>
      <div className="row">
        <h2>API clients</h2>
        <button type="button" className="primary" onClick={() => setCreating(true)}>
          Create API client
        </button>
      </div>
      <p className="hint">Integrators and scripts sign every request with the client's secret (docs/api.md). A client acts for whoever created it.</p>
      {secret && (
        <div>
          <ShownOnce label={`Secret of ${secret.client.name} (client id ${secret.client.id})`} value={secret.secret} />
        </div>
      )}
      <Outcome error={list.error ?? rotate.error ?? revoke.error} />
      {list.data?.clients.length === 0 && <Empty title="No API clients.">Create one for a script or an integration.</Empty>}
      {list.data && list.data.clients.length > 0 && (
        <div {...scrollRegion("API clients")}>
          <table>
            <thead>
              <tr>
                <th>Name</th>
                <th>Client id</th>
                <th>Role / scope</th>
                <th className="status">State</th>
                <th>Last use</th>
                <th>Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.data.clients.map((c) => (
                <tr key={c.id}>
                  <td>
                    {c.name}
                    {c.description && <div className="hint">{c.description}</div>}
                  </td>
                  <td>
                    <code>{c.id}</code>
                  </td>
                  <td>
                    {roleNames[c.role]} · {scopeText(c.scope)}
                  </td>
                  <td className="status">
                    <Badge word={c.revoked ? "revoked" : "active"} />
                  </td>
                  <td>
                    {formatAgo(c.lastUsedAt)}
                    {c.previousSecretValidUntil && <div className="hint">old secret valid until {formatTime(c.previousSecretValidUntil)}</div>}
                  </td>
                  <td className="row-actions">
                    {!c.revoked && (
                      <>
                        <button type="button" onClick={() => rotate.mutate({ clientId: c.id, overlapSeconds: 86400 })}>
                          Rotate secret
                        </button>
                        <button type="button" className="danger" onClick={() => revoke.mutate({ clientId: c.id })}>
                          Revoke
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <p className="hint">Rotating keeps the old secret valid for one day, so the integration can switch without a gap.</p>
      <ConfirmDialog
        open={creating}
        title="Create an API client"
        confirmLabel="Create"
        busy={create.isPending}
        onClose={() => setCreating(false)}
        onConfirm={() => create.mutate({ name: name.trim(), description, role, scope: { serverIds: words(ids), tags: words(tags) } })}
      >
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="billing-sync" />
        </label>
        <label>
          Description
          <input value={description} onChange={(e) => setDescription(e.target.value)} />
        </label>
        <RoleSelect role={role} onChange={setRole} />
        <ScopeFields ids={ids} tags={tags} onIds={setIds} onTags={setTags} />
        <Outcome error={create.error} />
      </ConfirmDialog>
    </>
  );
}

function EmailAndLiveness() {
  const settings = useQuery(AlertService.method.getEmailSettings, {});
  const liveness = useQuery(AlertService.method.getLivenessSettings, {});
  const save = useMutation(AlertService.method.setEmailSettings);
  const test = useMutation(AlertService.method.sendTestEmail);
  const saveLiveness = useMutation(AlertService.method.setLivenessSettings, { onSuccess: () => void liveness.refetch() });
  const [form, setForm] = useState({
    provider: EmailProvider.NONE,
    from: "",
    recipients: "",
    host: "",
    port: "587",
    secure: false,
    username: "",
    password: "",
    passwordSet: false,
    domain: "",
    region: "us",
    apiKey: "",
    apiKeySet: false,
  });
  const [missed, setMissed] = useState("");
  useEffect(() => {
    const s = settings.data?.settings;
    if (!s) return;
    setForm({
      provider: s.provider || EmailProvider.NONE,
      from: s.from,
      recipients: s.recipients.join(", "),
      host: s.smtp?.host ?? "",
      port: String(s.smtp?.port || 587),
      secure: s.smtp?.secure ?? false,
      username: s.smtp?.username ?? "",
      password: "",
      passwordSet: s.smtp?.passwordSet ?? false,
      domain: s.mailgun?.domain ?? "",
      region: s.mailgun?.region || "us",
      apiKey: "",
      apiKeySet: s.mailgun?.apiKeySet ?? false,
    });
  }, [settings.data]);
  useEffect(() => setMissed(String(liveness.data?.settings?.missedHeartbeats ?? "")), [liveness.data]);
  const set = (changes: Partial<typeof form>) => setForm({ ...form, ...changes });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate({
      settings: {
        provider: form.provider,
        from: form.from.trim(),
        recipients: words(form.recipients),
        smtp:
          form.provider === EmailProvider.SMTP
            ? { host: form.host.trim(), port: Number(form.port), secure: form.secure, username: form.username, password: form.password }
            : undefined,
        mailgun: form.provider === EmailProvider.MAILGUN ? { domain: form.domain.trim(), region: form.region, apiKey: form.apiKey } : undefined,
      },
    });
  };
  return (
    <>
      <form className="wizard" onSubmit={submit} aria-label="Alert e-mail">
        <h2>Alert e-mail</h2>
        <label>
          Send alerts by
          <select value={form.provider} onChange={(e) => set({ provider: Number(e.target.value) as EmailProvider })}>
            <option value={EmailProvider.NONE}>no e-mail (the console only)</option>
            <option value={EmailProvider.SMTP}>SMTP</option>
            <option value={EmailProvider.MAILGUN}>Mailgun</option>
          </select>
        </label>
        {form.provider !== EmailProvider.NONE && (
          <>
            <label>
              From
              <input type="email" value={form.from} onChange={(e) => set({ from: e.target.value })} />
            </label>
            <label>
              Recipients (comma separated)
              <input value={form.recipients} onChange={(e) => set({ recipients: e.target.value })} />
            </label>
          </>
        )}
        {form.provider === EmailProvider.SMTP && (
          <>
            <label>
              SMTP host
              <input value={form.host} onChange={(e) => set({ host: e.target.value })} required />
            </label>
            <label>
              Port
              <input type="number" value={form.port} onChange={(e) => set({ port: e.target.value })} />
            </label>
            <label className="chip">
              <input type="checkbox" checked={form.secure} onChange={(e) => set({ secure: e.target.checked })} />
              TLS from the first byte (port 465)
            </label>
            <label>
              User name
              <input value={form.username} onChange={(e) => set({ username: e.target.value })} autoComplete="off" />
            </label>
            <label>
              Password {form.passwordSet && "(one is stored; empty keeps it)"}
              <input type="password" value={form.password} onChange={(e) => set({ password: e.target.value })} autoComplete="new-password" />
            </label>
          </>
        )}
        {form.provider === EmailProvider.MAILGUN && (
          <>
            <label>
              Domain
              <input value={form.domain} onChange={(e) => set({ domain: e.target.value })} required />
            </label>
            <label>
              Region
              <select value={form.region} onChange={(e) => set({ region: e.target.value })}>
                <option value="us">US</option>
                <option value="eu">EU</option>
              </select>
            </label>
            <label>
              API key {form.apiKeySet && "(one is stored; empty keeps it)"}
              <input type="password" value={form.apiKey} onChange={(e) => set({ apiKey: e.target.value })} autoComplete="off" />
            </label>
          </>
        )}
        <Outcome error={save.error ?? settings.error} done={save.data ? "Saved." : undefined} />
        <div className="row">
          <button type="submit" className="primary" disabled={save.isPending}>
            Save
          </button>
          <button type="button" onClick={() => test.mutate({})} disabled={test.isPending || form.provider === EmailProvider.NONE}>
            {test.isPending ? "Sending…" : "Send test mail"}
          </button>
        </div>
        <Outcome error={test.error} done={test.data ? `Test mail sent to ${test.data.recipients.join(", ")}.` : undefined} />
      </form>
      <form
        className="wizard"
        aria-label="Liveness"
        onSubmit={(e: FormEvent) => {
          e.preventDefault();
          saveLiveness.mutate({ settings: { missedHeartbeats: Number(missed) } });
        }}
      >
        <h2>When a server counts as unreachable</h2>
        <label>
          After this many missed heartbeats (agents beat every {liveness.data?.settings?.heartbeatIntervalSeconds ?? "?"} s)
          <input type="number" min={1} max={100} value={missed} onChange={(e) => setMissed(e.target.value)} />
        </label>
        <Outcome error={saveLiveness.error} done={saveLiveness.data ? "Saved: the next liveness scan uses it." : undefined} />
        <button type="submit" disabled={saveLiveness.isPending}>
          Save
        </button>
      </form>
    </>
  );
}

const licenseWords: Record<string, string> = {
  active: "The license is valid.",
  grace: "Admin could not be reached: the panel keeps working on the last valid answer until the grace period ends.",
  over_quota: "More servers or instances are in use than the license allows: new agents cannot register.",
  expired: "The license has expired: new agents cannot register.",
  invalid: "Admin refused the license key.",
  unverified: "The license has not been checked with admin yet.",
  unlicensed: "No license key is configured.",
};

function License() {
  const summary = useQuery(FleetService.method.getFleetSummary, {});
  const l = summary.data?.license;
  if (summary.error) return <Outcome error={summary.error} />;
  if (!summary.data || !l) return <p>Loading…</p>;
  const quota = (used: number, max: number) => `${used.toLocaleString()} of ${max ? max.toLocaleString() : "unlimited"}`;
  return (
    <div className="facts">
      <div className="fact">
        <span className="fact-label">License</span>
        <span className="fact-value">
          <Badge word={l.state.replace(/_/g, " ")} /> {l.planName}
        </span>
      </div>
      <div className="fact wide">
        <span className="fact-label">What it means</span>
        <span className="fact-value">
          {licenseWords[l.state] ?? ""} {l.state !== "active" && l.message}
        </span>
      </div>
      {l.graceEndsAt && (
        <div className="fact">
          <span className="fact-label">Grace ends</span>
          <span className="fact-value">{formatTime(l.graceEndsAt)}</span>
        </div>
      )}
      <div className="fact">
        <span className="fact-label">Servers</span>
        <span className="fact-value">{quota(l.usedServers, l.maxServers)}</span>
      </div>
      <div className="fact">
        <span className="fact-label">OScam instances</span>
        <span className="fact-value">{quota(l.usedInstances, l.maxInstances)}</span>
      </div>
      <div className="fact">
        <span className="fact-label">Expires</span>
        <span className="fact-value">{l.expiresOn || "never"}</span>
      </div>
      <div className="fact">
        <span className="fact-label">Last checked with admin</span>
        <span className="fact-value">{formatTime(l.checkedAt)}</span>
      </div>
      <div className="fact wide">
        <span className="fact-label">New agents</span>
        <span className="fact-value">
          {summary.data.approvalRequired
            ? "wait for an operator's approval (REQUIRE_AGENT_APPROVAL=true); approve them on the Fleet page."
            : "are trusted as soon as they register with a valid install token (set REQUIRE_AGENT_APPROVAL=true in config/.env to require approval)."}
        </span>
      </div>
      <div className="fact">
        <span className="fact-label">Heartbeats</span>
        <span className="fact-value">
          every {summary.data.heartbeatIntervalSeconds} s; unreachable after {summary.data.missedHeartbeats} missed
        </span>
      </div>
    </div>
  );
}
