import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { keepPreviousData } from "@tanstack/react-query";
import { type FormEvent, useEffect, useState } from "react";
import { Link, useLocation, useNavigate, useSearchParams } from "react-router";
import {
  type Account,
  type AccountEditSchema,
  type AccountFilterSchema,
  AccountService,
  AccountSort,
  AccountState,
  type CreateChangeSetRequestSchema,
  type CreateChangeSetResponse,
  type ImportAccountsResponse,
} from "../../../gen/myosicam/panel/v1/account_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { InstanceService } from "../../../gen/myosicam/panel/v1/instance_pb.js";
import { ServerService } from "../../../gen/myosicam/panel/v1/server_pb.js";
import { errorText } from "../api/errors";
import { formatAgo, parseGroups, plural } from "../api/format";
import { transport } from "../api/transport";
import { useCan } from "../app/session";
import { Badge, ConfirmDialog, download, Empty, Outcome, Pager, ShownOnce, scrollRegion } from "../ui/common";
import { HistoryList } from "./ChangeSet";

type Filter = MessageInitShape<typeof AccountFilterSchema>;
type Edit = MessageInitShape<typeof AccountEditSchema>;
type ChangeRequest = MessageInitShape<typeof CreateChangeSetRequestSchema>;

const stateWords: Array<[AccountState, string]> = [
  [AccountState.ACTIVE, "active"],
  [AccountState.EXPIRING, "expiring"],
  [AccountState.EXPIRED, "expired"],
  [AccountState.DISABLED, "disabled"],
];
const stateWord = (s: AccountState) => stateWords.find(([v]) => v === s)?.[1] ?? "unknown";
const sorts: Array<[AccountSort, string]> = [
  [AccountSort.SERVER, "server"],
  [AccountSort.USER, "user"],
  [AccountSort.EXPIRY, "expiry"],
  [AccountSort.CHANGED, "changed"],
];
const dateOk = (d: string | null) => (d && /^\d{4}-\d{2}-\d{2}$/.test(d) ? d : "");

/** The account filter as the URL holds it (every filter, the sort and the page survive a reload or a shared link). */
function filterFromUrl(params: URLSearchParams): Filter {
  const csv = (k: string) => (params.get(k) ?? "").split(",").filter(Boolean);
  return {
    query: params.get("q") ?? "",
    states: csv("state").flatMap((w) => stateWords.filter(([, word]) => word === w).map(([v]) => v)),
    serverIds: csv("server").filter((id) => /^[0-9a-f-]{36}$/.test(id)),
    group: Math.min(64, Number(params.get("group")) || 0),
    caid: /^[0-9A-Fa-f]{2,4}$/.test(params.get("caid") ?? "") ? params.get("caid")! : "",
    expiresBefore: dateOk(params.get("before")),
    expiresAfter: dateOk(params.get("after_date")),
    driftedOnly: params.get("drifted") === "1",
    changedBy: params.get("by") ?? "",
  };
}

export function AccountsPage() {
  const [params, setParams] = useSearchParams();
  const location = useLocation();
  const navigate = useNavigate();
  const canOperate = useCan(Role.OPERATOR);
  const filter = filterFromUrl(params);
  const sort = sorts.find(([, w]) => w === params.get("sort"))?.[0] ?? AccountSort.SERVER;
  const descending = params.get("desc") === "1";
  const pageToken = params.get("page") ?? "";
  const previous = (location.state as { previous?: string[] } | null)?.previous ?? [];
  const accounts = useQuery(AccountService.method.listAccounts, { filter, sort, descending, pageSize: 50, pageToken }, { placeholderData: keepPreviousData });
  const servers = useQuery(ServerService.method.listServers, { pageSize: 500 });
  const [selected, setSelected] = useState<Map<string, Account>>(new Map());
  const [allMatching, setAllMatching] = useState(false);
  const [editing, setEditing] = useState<Account>();
  const [dialog, setDialog] = useState<"bulk" | "create" | "import" | undefined>();
  const [exporting, setExporting] = useState<{ busy: boolean; error?: unknown }>({ busy: false });

  const update = (changes: Record<string, string | undefined>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) v ? next.set(k, v) : next.delete(k);
    next.delete("page");
    setParams(next);
    setSelected(new Map());
    setAllMatching(false);
  };
  const goPage = (token: string, stack: string[]) => {
    const next = new URLSearchParams(params);
    token ? next.set("page", token) : next.delete("page");
    navigate({ search: next.toString() }, { state: { previous: stack } });
  };
  const rows = accounts.data?.accounts ?? [];
  const total = accounts.data?.total ?? 0;
  const keyOf = (a: Account) => `${a.instanceId}|${a.user}`;
  const pageAll = rows.length > 0 && rows.every((a) => selected.has(keyOf(a)));
  const selectionCount = allMatching ? total : selected.size;

  const exportCsv = async () => {
    setExporting({ busy: true });
    try {
      const chunks: BlobPart[] = [];
      for await (const res of createClient(AccountService, transport).exportAccounts({ filter, sort, descending }))
        chunks.push(res.chunk as Uint8Array<ArrayBuffer>);
      download(`accounts-${new Date().toISOString().slice(0, 10)}.csv`, chunks);
      setExporting({ busy: false });
    } catch (err) {
      setExporting({ busy: false, error: err });
    }
  };

  return (
    <section aria-labelledby="accounts-title">
      <div className="page-head">
        <h1 id="accounts-title">Accounts</h1>
        <span className="hint">Every OScam account of every server, in one table.</span>
        <span className="spacer" />
        {canOperate && (
          <button type="button" className="primary" onClick={() => setDialog("create")}>
            New account
          </button>
        )}
        <button type="button" onClick={exportCsv} disabled={exporting.busy}>
          {exporting.busy ? "Exporting…" : "Export CSV"}
        </button>
        {canOperate && (
          <button type="button" onClick={() => setDialog("import")}>
            Import CSV
          </button>
        )}
      </div>
      <Outcome error={exporting.error} />
      <AccountFilters
        params={params}
        servers={servers.data?.servers.map((s) => ({ id: s.id, name: s.name })) ?? []}
        onChange={update}
        sort={sort}
        descending={descending}
      />
      {canOperate && (
        <div className="bulkbar">
          <span>
            {selectionCount
              ? `${plural(selectionCount, "account")} selected${allMatching ? " (all matching the filters)" : ""}`
              : "Select accounts for bulk changes"}
          </span>
          {pageAll && !allMatching && total > rows.length && (
            <button type="button" className="link" onClick={() => setAllMatching(true)}>
              Select all {total.toLocaleString()} matching
            </button>
          )}
          <button type="button" disabled={!selectionCount} onClick={() => setDialog("bulk")}>
            Change selected…
          </button>
        </div>
      )}
      {accounts.error ? (
        <Outcome error={accounts.error} />
      ) : accounts.data && rows.length === 0 ? (
        <Empty title={params.size ? "No account matches these filters." : "No accounts yet."}>
          {params.size
            ? "Clear a filter, or search for part of a user name or description."
            : "Accounts appear once an agent has synced an OScam instance. Create one with “New account”."}
        </Empty>
      ) : (
        <div {...scrollRegion("Accounts")}>
          <table className="accounts">
            <thead>
              <tr>
                {canOperate && (
                  <th className="check">
                    <input
                      type="checkbox"
                      aria-label="Select every account on this page"
                      checked={pageAll}
                      onChange={() => {
                        setAllMatching(false);
                        setSelected(pageAll ? new Map() : new Map(rows.map((a) => [keyOf(a), a])));
                      }}
                    />
                  </th>
                )}
                <th>Server / instance</th>
                <th>User</th>
                <th className="status">State</th>
                <th>Groups</th>
                <th className="hide-narrow">CAID</th>
                <th>Expires</th>
                <th className="hide-narrow">Description</th>
                <th className="hide-narrow">Last change</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((a) => (
                <tr key={a.id} data-user={a.user} data-server={a.serverName}>
                  {canOperate && (
                    <td className="check">
                      <input
                        type="checkbox"
                        aria-label={`Select ${a.user} on ${a.serverName}/${a.instanceName}`}
                        checked={allMatching || selected.has(keyOf(a))}
                        onChange={() => {
                          setAllMatching(false);
                          const next = new Map(selected);
                          next.has(keyOf(a)) ? next.delete(keyOf(a)) : next.set(keyOf(a), a);
                          setSelected(next);
                        }}
                      />
                    </td>
                  )}
                  <td>
                    <Link to={`/servers/${a.serverId}`}>{a.serverName}</Link> / {a.instanceName}
                  </td>
                  <td>
                    <button type="button" className="link" onClick={() => setEditing(a)}>
                      {a.user}
                    </button>
                    {a.drifted && (
                      <span className="tag warn" title="Changed on the server outside the panel">
                        changed outside
                      </span>
                    )}
                  </td>
                  <td className="status">
                    <Badge word={stateWord(a.state)} />
                  </td>
                  <td>{a.groups.join(",") || "—"}</td>
                  <td className="hide-narrow">{a.caid || "—"}</td>
                  <td>{a.unreadableExpiry ? `unreadable: ${a.unreadableExpiry}` : a.expiryDate || "never"}</td>
                  <td className="hide-narrow">{a.description || "—"}</td>
                  <td className="hide-narrow">{a.changedAt ? `${formatAgo(a.changedAt)} by ${a.changedBy || "?"}` : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager
        summary={accounts.data ? `${plural(total, "account")}${accounts.isFetching ? " · updating…" : ""}` : "Loading…"}
        hasPrevious={pageToken !== ""}
        hasNext={!!accounts.data?.nextPageToken}
        onPrevious={() => goPage(previous.at(-1) ?? "", previous.slice(0, -1))}
        onNext={() => goPage(accounts.data!.nextPageToken, [...previous, pageToken])}
      />
      {dialog === "bulk" && (
        <BulkChange
          count={selectionCount}
          selection={
            allMatching
              ? { selection: { selection: { case: "filter" as const, value: filter } } }
              : {
                  selection: {
                    selection: { case: "keys" as const, value: { keys: [...selected.values()].map((a) => ({ instanceId: a.instanceId, user: a.user })) } },
                  },
                }
          }
          onClose={() => setDialog(undefined)}
        />
      )}
      {editing && <AccountEditor account={editing} onClose={() => setEditing(undefined)} />}
      {dialog === "create" && (
        <CreateAccount onClose={() => setDialog(undefined)} servers={servers.data?.servers.map((s) => ({ id: s.id, name: s.name })) ?? []} />
      )}
      {dialog === "import" && <ImportAccounts onClose={() => setDialog(undefined)} />}
    </section>
  );
}

function AccountFilters(props: {
  params: URLSearchParams;
  servers: Array<{ id: string; name: string }>;
  sort: AccountSort;
  descending: boolean;
  onChange(changes: Record<string, string | undefined>): void;
}) {
  const { params, onChange } = props;
  const [text, setText] = useState(params.get("q") ?? "");
  useEffect(() => setText(params.get("q") ?? ""), [params]);
  const states = new Set((params.get("state") ?? "").split(",").filter(Boolean));
  return (
    <form
      className="filters"
      aria-label="Filters"
      onSubmit={(e: FormEvent) => {
        e.preventDefault();
        onChange({ q: text.trim() || undefined });
      }}
    >
      <label>
        Search
        <input type="search" value={text} placeholder="user or description" onChange={(e) => setText(e.target.value)} />
      </label>
      <fieldset className="chips">
        <legend>State</legend>
        {stateWords.map(([, w]) => (
          <label key={w} className="chip">
            <input
              type="checkbox"
              checked={states.has(w)}
              onChange={() => {
                states.has(w) ? states.delete(w) : states.add(w);
                onChange({ state: [...states].join(",") || undefined });
              }}
            />
            {w}
          </label>
        ))}
      </fieldset>
      <label>
        Server
        <select value={params.get("server") ?? ""} onChange={(e) => onChange({ server: e.target.value || undefined })}>
          <option value="">all servers</option>
          {props.servers.map((s) => (
            <option key={s.id} value={s.id}>
              {s.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Group
        <input type="number" min={1} max={64} value={params.get("group") ?? ""} onChange={(e) => onChange({ group: e.target.value || undefined })} />
      </label>
      <label>
        CAID
        <input value={params.get("caid") ?? ""} maxLength={4} placeholder="e.g. 0963" onChange={(e) => onChange({ caid: e.target.value || undefined })} />
      </label>
      <label>
        Expires after
        <input type="date" value={params.get("after_date") ?? ""} onChange={(e) => onChange({ after_date: e.target.value || undefined })} />
      </label>
      <label>
        Expires before
        <input type="date" value={params.get("before") ?? ""} onChange={(e) => onChange({ before: e.target.value || undefined })} />
      </label>
      <label className="chip">
        <input type="checkbox" checked={params.get("drifted") === "1"} onChange={(e) => onChange({ drifted: e.target.checked ? "1" : undefined })} />
        changed outside the panel
      </label>
      <label>
        Sort by
        <select value={sorts.find(([v]) => v === props.sort)?.[1]} onChange={(e) => onChange({ sort: e.target.value })}>
          {sorts.map(([, w]) => (
            <option key={w} value={w}>
              {w}
            </option>
          ))}
        </select>
      </label>
      <label className="chip">
        <input type="checkbox" checked={props.descending} onChange={(e) => onChange({ desc: e.target.checked ? "1" : undefined })} />
        descending
      </label>
      <button type="submit">Search</button>
    </form>
  );
}

/** Plans the change set first (dry run: what would change, per account), then sends it and opens its live view. */
function usePlannedChange(onClose: () => void) {
  const navigate = useNavigate();
  const create = useMutation(AccountService.method.createChangeSet);
  const [plan, setPlan] = useState<CreateChangeSetResponse>();
  const preview = (request: ChangeRequest) => create.mutate({ ...request, dryRun: true }, { onSuccess: setPlan });
  const send = (request: ChangeRequest) =>
    create.mutate(
      { ...request, dryRun: false },
      {
        onSuccess: (res) => {
          onClose();
          navigate(`/change-sets/${res.changeSet?.id}`);
        },
      },
    );
  return { create, plan, setPlan, preview, send };
}

function PlanPreview({ plan }: { plan: CreateChangeSetResponse }) {
  const items = plan.preview;
  return (
    <section className="plan" aria-label="Planned changes">
      <p>
        <strong>{plan.changeSet?.summary || `${plural(items.length, "change")}`}</strong>
      </p>
      <ul className="plan-items">
        {items.slice(0, 12).map((i) => (
          <li key={`${i.instanceId}|${i.user}`}>
            {i.serverName}/{i.instanceName} <strong>{i.user}</strong>:{" "}
            {i.changes.map((c) => `${c.field} ${c.before || "∅"} → ${c.after || "∅"}`).join("; ") || "no change"}
          </li>
        ))}
        {items.length > 12 && <li>… and {(items.length - 12).toLocaleString()} more</li>}
      </ul>
    </section>
  );
}

type BulkKind = "disable" | "enable" | "extend" | "groups" | "delete";

function BulkChange({ count, selection, onClose }: { count: number; selection: Pick<ChangeRequest, "selection">; onClose(): void }) {
  const [kind, setKind] = useState<BulkKind>("disable");
  const [days, setDays] = useState("30");
  const [groups, setGroups] = useState("");
  const [description, setDescription] = useState("");
  const planned = usePlannedChange(onClose);
  const edit = (): Edit | undefined => {
    if (kind === "disable") return { edit: { case: "disable", value: {} } };
    if (kind === "enable") return { edit: { case: "enable", value: {} } };
    if (kind === "delete") return { edit: { case: "delete", value: {} } };
    if (kind === "extend") return { edit: { case: "extendExpiryDays", value: Number(days) } };
    return {
      edit: {
        case: "setGroups",
        value: {
          groups: parseGroups(groups),
        },
      },
    };
  };
  const request = (): ChangeRequest => ({ selection: selection.selection, edits: [edit()!], description });
  return (
    <ConfirmDialog
      open
      title={planned.plan ? "Send these changes?" : `Change ${plural(count, "account")}`}
      confirmLabel={planned.plan ? (kind === "delete" ? "Delete them" : "Send to the servers") : "Preview"}
      danger={kind === "delete" && !!planned.plan}
      busy={planned.create.isPending}
      onClose={onClose}
      onConfirm={() => (planned.plan ? planned.send(request()) : planned.preview(request()))}
    >
      <fieldset disabled={!!planned.plan}>
        <legend>Change</legend>
        {(["disable", "enable", "extend", "groups", "delete"] as const).map((k) => (
          <label key={k} className="chip">
            <input type="radio" name="bulk-kind" checked={kind === k} onChange={() => setKind(k)} />
            {k === "extend" ? "extend expiry" : k === "groups" ? "set groups" : k}
          </label>
        ))}
        {kind === "extend" && (
          <label>
            By days
            <input type="number" min={1} max={3650} value={days} onChange={(e) => setDays(e.target.value)} />
          </label>
        )}
        {kind === "groups" && (
          <label>
            Groups (replace; numbers 1–64)
            <input value={groups} onChange={(e) => setGroups(e.target.value)} placeholder="1,2" />
          </label>
        )}
        <label>
          Note for the history (optional)
          <input value={description} maxLength={500} onChange={(e) => setDescription(e.target.value)} />
        </label>
      </fieldset>
      {planned.plan && <PlanPreview plan={planned.plan} />}
      {planned.plan && (
        <button type="button" className="link" onClick={() => planned.setPlan(undefined)}>
          ← Change the request
        </button>
      )}
      <Outcome error={planned.create.error} />
    </ConfirmDialog>
  );
}

/** One account: its fields, changed as a change set of one; its password on request; its history. */
function AccountEditor({ account: a, onClose }: { account: Account; onClose(): void }) {
  const canOperate = useCan(Role.OPERATOR);
  const [enabled, setEnabled] = useState(a.enabled);
  const [expiry, setExpiry] = useState(a.expiryDate);
  const [groups, setGroups] = useState(a.groups.join(","));
  const [caid, setCaid] = useState(a.caid);
  const [ident, setIdent] = useState(a.ident);
  const [description, setDescription] = useState(a.description);
  const [password, setPassword] = useState("");
  const [tab, setTab] = useState<"edit" | "history">("edit");
  const reveal = useMutation(AccountService.method.revealPassword);
  const planned = usePlannedChange(onClose);
  const edits: Edit[] = [];
  if (enabled !== a.enabled) edits.push({ edit: enabled ? { case: "enable", value: {} } : { case: "disable", value: {} } });
  if (expiry !== a.expiryDate) edits.push({ edit: { case: "setExpiry", value: expiry || "never" } });
  if (groups !== a.groups.join(","))
    edits.push({
      edit: {
        case: "setGroups",
        value: {
          groups: parseGroups(groups),
        },
      },
    });
  if (caid !== a.caid) edits.push({ edit: { case: "setCaid", value: caid } });
  if (ident !== a.ident) edits.push({ edit: { case: "setIdent", value: ident } });
  if (description !== a.description) edits.push({ edit: { case: "setDescription", value: description } });
  if (password) edits.push({ edit: { case: "setPassword", value: password } });
  const request: ChangeRequest = { selection: { selection: { case: "keys", value: { keys: [{ instanceId: a.instanceId, user: a.user }] } } }, edits };
  return (
    <ConfirmDialog
      open
      title={`${a.user} on ${a.serverName}/${a.instanceName}`}
      confirmLabel={edits.length === 0 ? "No changes" : "Save"}
      disabled={!canOperate || edits.length === 0 || tab !== "edit"}
      busy={planned.create.isPending}
      onClose={onClose}
      onConfirm={() => planned.send(request)}
    >
      <fieldset className="segmented">
        <legend className="sr-only">Account view</legend>
        <button type="button" aria-pressed={tab === "edit"} onClick={() => setTab("edit")}>
          Fields
        </button>
        <button type="button" aria-pressed={tab === "history"} onClick={() => setTab("history")}>
          History
        </button>
      </fieldset>
      {tab === "history" ? (
        <HistoryList of={{ case: "account", value: { instanceId: a.instanceId, user: a.user } }} />
      ) : (
        <fieldset disabled={!canOperate} className="editor">
          <label className="chip">
            <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} />
            enabled
          </label>
          <label>
            Expires (empty: never)
            <input type="date" value={expiry} onChange={(e) => setExpiry(e.target.value)} />
          </label>
          <label>
            Groups
            <input value={groups} onChange={(e) => setGroups(e.target.value)} />
          </label>
          <label>
            CAID
            <input value={caid} onChange={(e) => setCaid(e.target.value)} />
          </label>
          <label>
            Ident
            <input value={ident} onChange={(e) => setIdent(e.target.value)} />
          </label>
          <label>
            Description
            <input value={description} maxLength={200} onChange={(e) => setDescription(e.target.value)} />
          </label>
          <label>
            New password (empty: keep)
            <input type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
          </label>
          {a.extra.length > 0 && (
            <p className="hint">
              Other keys: {a.extra.map((kv) => `${kv.key}=${kv.value}`).join(", ")} (change them with <code>myosicam accounts change --set key=value</code>)
            </p>
          )}
          {a.hasPassword && canOperate && (
            <div>
              {reveal.data ? (
                <ShownOnce label="Password (this was recorded in the audit log)" value={reveal.data.password} />
              ) : (
                <button type="button" onClick={() => reveal.mutate({ accountId: a.id })} disabled={reveal.isPending}>
                  Reveal password
                </button>
              )}
              <Outcome error={reveal.error} />
            </div>
          )}
        </fieldset>
      )}
      <Outcome error={planned.create.error} />
    </ConfirmDialog>
  );
}

function CreateAccount({ servers, onClose }: { servers: Array<{ id: string; name: string }>; onClose(): void }) {
  const [serverId, setServerId] = useState(servers[0]?.id ?? "");
  const [instanceIds, setInstanceIds] = useState<Set<string>>(new Set());
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [groups, setGroups] = useState("1");
  const [expiry, setExpiry] = useState("");
  const [description, setDescription] = useState("");
  const instances = useQuery(InstanceService.method.listInstances, { serverId }, { enabled: !!serverId });
  const planned = usePlannedChange(onClose);
  const request: ChangeRequest = {
    creations: [
      {
        instanceIds: [...instanceIds],
        user: user.trim(),
        fields: {
          password,
          groups: parseGroups(groups),
          expiryDate: expiry,
          description,
        },
      },
    ],
  };
  return (
    <ConfirmDialog
      open
      title="New account"
      confirmLabel="Create"
      disabled={!user.trim() || instanceIds.size === 0}
      busy={planned.create.isPending}
      onClose={onClose}
      onConfirm={() => planned.send(request)}
    >
      <label>
        Server
        <select value={serverId} onChange={(e) => setServerId(e.target.value)}>
          {servers.map((s) => (
            <option key={s.id} value={s.id}>
              {s.name}
            </option>
          ))}
        </select>
      </label>
      <fieldset>
        <legend>On instances</legend>
        {instances.data?.instances.map((i) => (
          <label key={i.id} className="chip">
            <input
              type="checkbox"
              checked={instanceIds.has(i.id)}
              onChange={() => {
                const next = new Set(instanceIds);
                next.has(i.id) ? next.delete(i.id) : next.add(i.id);
                setInstanceIds(next);
              }}
            />
            {i.name}
          </label>
        ))}
        {instances.data?.instances.length === 0 && <p className="hint">This server reports no OScam instance.</p>}
      </fieldset>
      <label>
        User
        <input value={user} onChange={(e) => setUser(e.target.value)} required />
      </label>
      <label>
        Password
        <input type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
      </label>
      <label>
        Groups
        <input value={groups} onChange={(e) => setGroups(e.target.value)} />
      </label>
      <label>
        Expires (empty: never)
        <input type="date" value={expiry} onChange={(e) => setExpiry(e.target.value)} />
      </label>
      <label>
        Description
        <input value={description} maxLength={200} onChange={(e) => setDescription(e.target.value)} />
      </label>
      <Outcome error={planned.create.error} />
    </ConfirmDialog>
  );
}

function ImportAccounts({ onClose }: { onClose(): void }) {
  const navigate = useNavigate();
  const [csv, setCsv] = useState("");
  const [skipInvalid, setSkipInvalid] = useState(false);
  const [preview, setPreview] = useState<ImportAccountsResponse>();
  const importer = useMutation(AccountService.method.importAccounts);
  const run = (dryRun: boolean) =>
    importer.mutate(
      { csv, dryRun, skipInvalid },
      {
        onSuccess: (res) => {
          if (dryRun) return setPreview(res);
          onClose();
          if (res.changeSet?.id) navigate(`/change-sets/${res.changeSet.id}`);
        },
      },
    );
  return (
    <ConfirmDialog
      open
      title="Import accounts from CSV"
      confirmLabel={preview ? `Import ${plural(preview.valid, "row")}` : "Preview"}
      disabled={!csv || (!!preview && (preview.valid === 0 || (preview.invalid > 0 && !skipInvalid)))}
      busy={importer.isPending}
      onClose={onClose}
      onConfirm={() => run(!preview)}
    >
      <p className="hint">
        New accounts, one per row, with a header line: server, instance and user (required); password, enabled, groups, caid, ident, expiry_date, description
        (optional). An account that exists already is refused in the preview.
      </p>
      <label>
        CSV file
        <input
          type="file"
          accept=".csv,text/csv"
          onChange={async (e) => {
            const file = e.target.files?.[0];
            if (file) {
              setCsv(await file.text());
              setPreview(undefined);
            }
          }}
        />
      </label>
      <label>
        or paste it
        <textarea
          rows={6}
          value={csv}
          onChange={(e) => {
            setCsv(e.target.value);
            setPreview(undefined);
          }}
        />
      </label>
      {preview && (
        <section className="plan" aria-label="Import preview">
          <p>
            <strong>
              {plural(preview.valid, "valid row")}, {plural(preview.invalid, "invalid row")}
            </strong>
          </p>
          <ul className="plan-items">
            {preview.rows.slice(0, 50).map((r) => (
              <li key={r.line} className={r.error ? "bad" : ""}>
                line {r.line}: {r.serverName}/{r.instanceName} {r.user} {r.error ? `— ${r.error}` : "— ok"}
              </li>
            ))}
          </ul>
          {preview.invalid > 0 && (
            <label className="chip">
              <input type="checkbox" checked={skipInvalid} onChange={(e) => setSkipInvalid(e.target.checked)} />
              import the valid rows and skip the invalid ones
            </label>
          )}
        </section>
      )}
      {importer.error && <p className="notice error">{errorText(importer.error)}</p>}
    </ConfirmDialog>
  );
}
