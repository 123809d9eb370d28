import { useMutation, useQuery } from "@connectrpc/connect-query";
import { createClient } from "@connectrpc/connect";
import { keepPreviousData } from "@tanstack/react-query";
import { type FormEvent, useEffect, useMemo, useState } from "react";
import { Link, useLocation, useNavigate, useSearchParams } from "react-router";
import { CommandKind } from "../../../gen/myosicam/agent/v1/agent_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { CommandService, CommandStatus } from "../../../gen/myosicam/panel/v1/command_pb.js";
import { FleetService } from "../../../gen/myosicam/panel/v1/fleet_pb.js";
import { InstanceService } from "../../../gen/myosicam/panel/v1/instance_pb.js";
import { type Server, ServerService, ServerStatus } from "../../../gen/myosicam/panel/v1/server_pb.js";
import { commandOutcome, isFinal, useWatchedCommands } from "../api/commands";
import { errorText } from "../api/errors";
import { formatAgo, plural } from "../api/format";
import { transport } from "../api/transport";
import { hasRole, isScoped, useCan, useIdentity } from "../app/session";
import { Badge, ConfirmDialog, Empty, Outcome, Pager, scrollRegion } from "../ui/common";

export const statusWord = (s: ServerStatus) => ServerStatus[s]?.toLowerCase() ?? "unknown";
const filterStatuses = [ServerStatus.ONLINE, ServerStatus.UNREACHABLE, ServerStatus.PENDING, ServerStatus.NEW, ServerStatus.REVOKED];
const tagPattern = /^[a-z0-9][a-z0-9_.:-]{0,62}$/;
const listCsv = (value: string | null) => (value ? value.split(",").filter(Boolean) : []);

/** The fleet at a glance, and the server list with filters in the URL and bulk actions. */
export function OverviewPage() {
  const [params, setParams] = useSearchParams();
  const location = useLocation();
  const navigate = useNavigate();
  const query = params.get("q") ?? "";
  const statuses = listCsv(params.get("status"))
    .map((s) => filterStatuses.find((f) => statusWord(f) === s))
    .filter((s): s is ServerStatus => s !== undefined);
  const tags = listCsv(params.get("tag")).filter((t) => tagPattern.test(t));
  const pageToken = params.get("after") ?? "";
  const previous = (location.state as { previous?: string[] } | null)?.previous ?? [];

  const summary = useQuery(FleetService.method.getFleetSummary, { tags });
  const servers = useQuery(
    ServerService.method.listServers,
    { filter: { statuses, tags, query }, pageSize: 100, pageToken },
    { placeholderData: keepPreviousData },
  );
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [search, setSearch] = useState(query);
  useEffect(() => setSearch(query), [query]);

  const update = (changes: Record<string, string | undefined>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) v ? next.set(k, v) : next.delete(k);
    next.delete("after");
    setParams(next);
    setSelected(new Set());
  };
  const toggleStatus = (s: ServerStatus) => {
    const words = new Set(statuses.map(statusWord));
    words.has(statusWord(s)) ? words.delete(statusWord(s)) : words.add(statusWord(s));
    update({ status: [...words].join(",") || undefined });
  };
  const goPage = (token: string, stack: string[]) => {
    const next = new URLSearchParams(params);
    token ? next.set("after", token) : next.delete("after");
    navigate({ search: next.toString() }, { state: { previous: stack } });
  };

  const rows = servers.data?.servers ?? [];
  const s = summary.data;
  const identity = useIdentity();
  const canInstall = hasRole(identity, Role.OPERATOR) && !isScoped(identity);
  return (
    <section aria-labelledby="fleet-title">
      <div className="page-head">
        <h1 id="fleet-title">Fleet</h1>
        {canInstall && (
          <Link className="button primary" to="/install">
            Install a server
          </Link>
        )}
      </div>
      <section className="cards" aria-label="Fleet at a glance">
        <Card label="Online" value={s?.serversOnline} tone="ok" onClick={() => update({ status: "online" })} />
        <Card
          label="Unreachable"
          value={s?.serversUnreachable}
          tone={s?.serversUnreachable ? "bad" : "muted"}
          onClick={() => update({ status: "unreachable" })}
        />
        <Card label="Pending approval" value={s?.serversPending} tone={s?.serversPending ? "warn" : "muted"} onClick={() => update({ status: "pending" })} />
        <Card label="Revoked" value={s?.serversRevoked} tone="muted" onClick={() => update({ status: "revoked" })} />
        <Card label="Instances running" value={s ? `${s.instancesRunning} / ${s.instancesTotal}` : undefined} tone="ok" />
        <Card label="Instances stopped" value={s?.instancesStopped} tone={s?.instancesStopped ? "warn" : "muted"} />
        <Card label="WebIF unreachable" value={s?.webifUnreachable} tone={s?.webifUnreachable ? "bad" : "muted"} />
        <Card
          label={`Accounts expiring ≤ ${s?.expiringWithinDays ?? 7} days`}
          value={s?.accountsExpiring}
          tone={s?.accountsExpiring ? "warn" : "muted"}
          onClick={() => navigate("/accounts?state=expiring")}
        />
      </section>
      {summary.error && <Outcome error={summary.error} />}

      <form
        className="filters"
        aria-label="Filters"
        onSubmit={(e: FormEvent) => {
          e.preventDefault();
          update({ q: search.trim() || undefined });
        }}
      >
        <label>
          Search
          <input type="search" placeholder="name, host name or address" value={search} onChange={(e) => setSearch(e.target.value)} />
        </label>
        <fieldset className="chips">
          <legend>Status</legend>
          {filterStatuses.map((st) => (
            <label key={st} className="chip">
              <input type="checkbox" checked={statuses.includes(st)} onChange={() => toggleStatus(st)} />
              {statusWord(st)}
            </label>
          ))}
        </fieldset>
        <TagFilter tags={tags} onChange={(t) => update({ tag: t.join(",") || undefined })} />
        <button type="submit">Search</button>
        {(query || statuses.length > 0 || tags.length > 0) && (
          <button type="button" onClick={() => setParams(new URLSearchParams())}>
            Clear filters
          </button>
        )}
      </form>

      <BulkActions servers={rows.filter((r) => selected.has(r.id))} onDone={() => setSelected(new Set())} />

      {servers.error ? (
        <Outcome error={servers.error} />
      ) : servers.data && rows.length === 0 ? (
        query || statuses.length || tags.length ? (
          <Empty title="No server matches these filters.">Clear a filter or search for part of a name or address.</Empty>
        ) : (
          <Empty title="No servers yet.">
            <Link to="/install">Install the agent on a server</Link> over SSH, or run <code>npx myosicam token create --server &lt;name&gt;</code> for a manual
            bootstrap.
          </Empty>
        )
      ) : (
        <ServerTable rows={rows} loading={servers.isPending} selected={selected} onSelect={setSelected} />
      )}
      <Pager
        summary={servers.data ? `${plural(servers.data.total, "server")}${servers.isFetching ? " · updating…" : ""}` : "Loading…"}
        hasPrevious={pageToken !== ""}
        hasNext={!!servers.data?.nextPageToken}
        onPrevious={() => goPage(previous.at(-1) ?? "", previous.slice(0, -1))}
        onNext={() => goPage(servers.data!.nextPageToken, [...previous, pageToken])}
      />
    </section>
  );
}

function Card({ label, value, tone, onClick }: { label: string; value: number | string | undefined; tone: string; onClick?: () => void }) {
  const body = (
    <>
      <span className="card-value">{value === undefined ? "…" : typeof value === "number" ? value.toLocaleString() : value}</span>
      <span className="card-label">{label}</span>
    </>
  );
  return onClick ? (
    <button type="button" className={`card ${tone}`} onClick={onClick}>
      {body}
    </button>
  ) : (
    <div className={`card ${tone}`}>{body}</div>
  );
}

function TagFilter({ tags, onChange }: { tags: string[]; onChange(tags: string[]): void }) {
  const [text, setText] = useState("");
  const add = () => {
    const tag = text.trim().toLowerCase();
    if (tagPattern.test(tag) && !tags.includes(tag)) onChange([...tags, tag]);
    setText("");
  };
  return (
    <div className="tag-filter">
      <label>
        Tag
        <input
          value={text}
          placeholder="e.g. eu-west"
          onChange={(e) => setText(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              add();
            }
          }}
        />
      </label>
      {tags.map((t) => (
        <button key={t} type="button" className="tag removable" onClick={() => onChange(tags.filter((x) => x !== t))} aria-label={`Remove tag filter ${t}`}>
          {t} ×
        </button>
      ))}
    </div>
  );
}

function ServerTable({ rows, loading, selected, onSelect }: { rows: Server[]; loading: boolean; selected: Set<string>; onSelect(s: Set<string>): void }) {
  const all = rows.length > 0 && rows.every((r) => selected.has(r.id));
  const toggle = (id: string) => {
    const next = new Set(selected);
    next.has(id) ? next.delete(id) : next.add(id);
    onSelect(next);
  };
  return (
    <div {...scrollRegion("Servers")}>
      <table className="servers">
        <thead>
          <tr>
            <th className="check">
              <input
                type="checkbox"
                aria-label="Select every server on this page"
                checked={all}
                onChange={() => onSelect(all ? new Set() : new Set(rows.map((r) => r.id)))}
              />
            </th>
            <th>Server</th>
            <th className="status">Status</th>
            <th>Tags</th>
            <th className="hide-narrow">Host</th>
            <th className="hide-narrow">Address</th>
            <th className="hide-narrow">Agent</th>
            <th className="num">Instances</th>
            <th className="hide-narrow">Last seen</th>
          </tr>
        </thead>
        <tbody>
          {loading && rows.length === 0 && (
            <tr>
              <td colSpan={9}>Loading servers…</td>
            </tr>
          )}
          {rows.map((r) => (
            <tr key={r.id} data-server={r.name}>
              <td className="check">
                <input type="checkbox" aria-label={`Select ${r.name}`} checked={selected.has(r.id)} onChange={() => toggle(r.id)} />
              </td>
              <td>
                <Link to={`/servers/${r.id}`}>{r.name}</Link>
              </td>
              <td className="status">
                <Badge word={statusWord(r.status)} />
              </td>
              <td>
                {r.tags.map((t) => (
                  <span key={t} className="tag">
                    {t}
                  </span>
                ))}
              </td>
              <td className="hide-narrow">{r.hostname || "—"}</td>
              <td className="hide-narrow">{r.ip || "—"}</td>
              <td className="hide-narrow">{r.agentVersion || "—"}</td>
              <td className="num">
                {r.runningInstanceCount} / {r.instanceCount}
              </td>
              <td className="hide-narrow">{formatAgo(r.lastSeenAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

interface ResultRow {
  server: string;
  ok?: boolean;
  text: string;
  commandId?: string;
}

type Bulk = "approve" | "tag" | "resync" | "restart";

/** Approve, tag, resync or restart the selected servers; each server's result is listed. */
function BulkActions({ servers, onDone }: { servers: Server[]; onDone(): void }) {
  const canOperate = useCan(Role.OPERATOR);
  const [action, setAction] = useState<Bulk | undefined>();
  const [addTags, setAddTags] = useState("");
  const [removeTags, setRemoveTags] = useState("");
  const [results, setResults] = useState<{ title: string; rows: ResultRow[] } | undefined>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const approve = useMutation(ServerService.method.approveServers);
  const setTags = useMutation(ServerService.method.setServerTags);
  const watched = useWatchedCommands(useMemo(() => results?.rows.flatMap((r) => (r.commandId ? [r.commandId] : [])) ?? [], [results]));

  if (!canOperate) return null;
  const names = new Map(servers.map((s) => [s.id, s.name]));
  const words = (text: string) => text.split(/[\s,]+/).filter(Boolean);

  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const ids = servers.map((s) => s.id);
      if (action === "approve") {
        const res = await approve.mutateAsync({ serverIds: ids });
        setResults({
          title: "Approve",
          rows: res.results.map((r) => ({ server: names.get(r.serverId) ?? r.serverId, ok: r.ok, text: r.ok ? "approved" : r.error })),
        });
      } else if (action === "tag") {
        const res = await setTags.mutateAsync({ serverIds: ids, add: words(addTags), remove: words(removeTags) });
        setResults({ title: "Tags", rows: res.servers.map((s) => ({ server: s.name, ok: true, text: s.tags.join(", ") || "no tags" })) });
      } else if (action === "resync" || action === "restart") {
        const client = createClient(CommandService, transport);
        const targets: Array<{ serverId: string; instance: string }> = [];
        const rows: ResultRow[] = [];
        if (action === "resync") for (const id of ids) targets.push({ serverId: id, instance: "" });
        else {
          const instances = createClient(InstanceService, transport);
          for (const server of servers) {
            const list = await instances.listInstances({ serverId: server.id });
            if (list.instances.length === 0) rows.push({ server: server.name, ok: false, text: "no OScam instance reported: nothing to restart" });
            for (const i of list.instances) targets.push({ serverId: server.id, instance: i.name });
          }
        }
        if (targets.length > 0) {
          const res = await client.sendCommand({ targets, kind: action === "resync" ? CommandKind.RESYNC : CommandKind.RESTART });
          for (const c of res.commands) rows.push({ server: c.instance ? `${c.serverName} / ${c.instance}` : c.serverName, text: "sent", commandId: c.id });
        }
        setResults({ title: action === "resync" ? "Resync" : "Restart instances", rows });
      }
      setAction(undefined);
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <div className="bulkbar" aria-live="polite">
        <span>{servers.length ? `${plural(servers.length, "server")} selected` : "Select servers for bulk actions"}</span>
        <button type="button" disabled={!servers.length} onClick={() => setAction("approve")}>
          Approve
        </button>
        <button type="button" disabled={!servers.length} onClick={() => setAction("tag")}>
          Tag…
        </button>
        <button type="button" disabled={!servers.length} onClick={() => setAction("resync")}>
          Resync
        </button>
        <button type="button" disabled={!servers.length} onClick={() => setAction("restart")}>
          Restart instances
        </button>
      </div>
      <ConfirmDialog
        open={action !== undefined}
        title={
          action === "approve"
            ? `Approve ${plural(servers.length, "server")}?`
            : action === "tag"
              ? `Tags of ${plural(servers.length, "server")}`
              : action === "resync"
                ? `Resync ${plural(servers.length, "server")}?`
                : `Restart every OScam instance of ${plural(servers.length, "server")}?`
        }
        confirmLabel={action === "tag" ? "Save tags" : action === "approve" ? "Approve" : action === "resync" ? "Resync" : "Restart"}
        danger={action === "restart"}
        busy={busy}
        onConfirm={run}
        onClose={() => setAction(undefined)}
      >
        <p className="hint">{servers.map((s) => s.name).join(", ")}</p>
        {action === "restart" && <p>Card sharing on these instances stops for a few seconds while OScam restarts.</p>}
        {action === "tag" && (
          <>
            <label>
              Add tags (space or comma separated)
              <input value={addTags} onChange={(e) => setAddTags(e.target.value)} placeholder="eu-west production" />
            </label>
            <label>
              Remove tags
              <input value={removeTags} onChange={(e) => setRemoveTags(e.target.value)} />
            </label>
          </>
        )}
        {error !== undefined && <p className="notice error">{errorText(error)}</p>}
      </ConfirmDialog>
      {results && (
        <section className="results" aria-label={`${results.title} results`}>
          <div className="row">
            <h2>{results.title}: results</h2>
            <button type="button" onClick={() => setResults(undefined)}>
              Dismiss
            </button>
          </div>
          {watched.error && <p className="notice error">{watched.error}</p>}
          <table>
            <tbody>
              {results.rows.map((r) => {
                const command = r.commandId ? watched.byId.get(r.commandId) : undefined;
                const ok = command ? (isFinal(command.status) ? command.status === CommandStatus.SUCCEEDED : undefined) : r.ok;
                return (
                  <tr key={r.commandId ?? r.server} data-result={r.server}>
                    <td>{r.server}</td>
                    <td className="status">
                      <Badge word={ok === undefined ? "pending" : ok ? "succeeded" : "failed"} />
                    </td>
                    <td>{r.commandId ? commandOutcome(command) : r.text}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </section>
      )}
    </>
  );
}
