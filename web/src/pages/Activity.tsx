import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectQueryKey, useMutation, useQuery } from "@connectrpc/connect-query";
import { keepPreviousData, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { AccountService } from "../../../gen/myosicam/panel/v1/account_pb.js";
import { AlertKind, AlertService } from "../../../gen/myosicam/panel/v1/alert_pb.js";
import { AuditService } from "../../../gen/myosicam/panel/v1/audit_pb.js";
import { CommandService, CommandStatus } from "../../../gen/myosicam/panel/v1/command_pb.js";
import { FleetService } from "../../../gen/myosicam/panel/v1/fleet_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { formatTime, plural } from "../api/format";
import { transport } from "../api/transport";
import { useCan } from "../app/session";
import { CommandTable } from "../ui/CommandTable";
import { Badge, download, Empty, Outcome, Pager, Tabs, scrollRegion } from "../ui/common";
import { changeSetWord } from "./ChangeSet";

const tabs = [
  { id: "commands", label: "Commands" },
  { id: "change-sets", label: "Change sets" },
  { id: "alerts", label: "Alerts" },
  { id: "audit", label: "Audit log" },
];

/** What happened: commands, change sets, alerts (acknowledge) and the audit log (filters, CSV). */
export function ActivityPage() {
  const [params, setParams] = useSearchParams();
  const tab = tabs.find((t) => t.id === params.get("tab"))?.id ?? "commands";
  return (
    <section aria-labelledby="activity-title">
      <h1 id="activity-title">Activity</h1>
      <Tabs tabs={tabs} current={tab} onChange={(id) => setParams({ tab: id })} />
      {tab === "commands" && <Commands />}
      {tab === "change-sets" && <ChangeSets />}
      {tab === "alerts" && <Alerts />}
      {tab === "audit" && <Audit />}
    </section>
  );
}

/** Cursor paging kept in component state (previous tokens on a stack). */
function usePages() {
  const [stack, setStack] = useState<string[]>([]);
  const [token, setToken] = useState("");
  return {
    token,
    reset: () => {
      setStack([]);
      setToken("");
    },
    pager: (next: string | undefined, summary?: string) => (
      <Pager
        summary={summary}
        hasPrevious={token !== ""}
        hasNext={!!next}
        onPrevious={() => {
          setToken(stack.at(-1) ?? "");
          setStack(stack.slice(0, -1));
        }}
        onNext={() => {
          setStack([...stack, token]);
          setToken(next ?? "");
        }}
      />
    ),
  };
}

function Commands() {
  const [failedOnly, setFailedOnly] = useState(false);
  const pages = usePages();
  const list = useQuery(
    CommandService.method.listCommands,
    { statuses: failedOnly ? [CommandStatus.FAILED, CommandStatus.EXPIRED] : [], pageSize: 50, pageToken: pages.token },
    { placeholderData: keepPreviousData },
  );
  return (
    <>
      <label className="chip">
        <input
          type="checkbox"
          checked={failedOnly}
          onChange={(e) => {
            setFailedOnly(e.target.checked);
            pages.reset();
          }}
        />
        failed or expired only
      </label>
      {list.error && <Outcome error={list.error} />}
      {list.data?.commands.length === 0 && <Empty title="No commands.">Commands appear here when someone starts, stops or changes something.</Empty>}
      {list.data && list.data.commands.length > 0 && <CommandTable commands={list.data.commands} label="Commands" showServer={true} />}
      {pages.pager(list.data?.nextPageToken)}
    </>
  );
}

function ChangeSets() {
  const pages = usePages();
  const list = useQuery(AccountService.method.listChangeSets, { pageSize: 50, pageToken: pages.token }, { placeholderData: keepPreviousData });
  return (
    <>
      {list.error && <Outcome error={list.error} />}
      {list.data?.changeSets.length === 0 && (
        <Empty title="No change sets yet.">
          Change accounts on the <Link to="/accounts">Accounts</Link> page.
        </Empty>
      )}
      {list.data && list.data.changeSets.length > 0 && (
        <div {...scrollRegion("Change sets")}>
          <table>
            <thead>
              <tr>
                <th>When</th>
                <th>What</th>
                <th className="status">Status</th>
                <th className="num">Applied</th>
                <th className="num">Failed</th>
                <th className="hide-narrow">By</th>
              </tr>
            </thead>
            <tbody>
              {list.data.changeSets.map((c) => (
                <tr key={c.id}>
                  <td>{formatTime(c.createdAt)}</td>
                  <td>
                    <Link to={`/change-sets/${c.id}`}>{c.summary}</Link>
                  </td>
                  <td className="status">
                    <Badge word={changeSetWord(c.status)} />
                  </td>
                  <td className="num">{c.counts?.applied ?? 0}</td>
                  <td className="num">{c.counts?.failed ?? 0}</td>
                  <td className="hide-narrow">{c.createdBy}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {pages.pager(list.data?.nextPageToken)}
    </>
  );
}

function Alerts() {
  const canOperate = useCan(Role.OPERATOR);
  const [openOnly, setOpenOnly] = useState(true);
  const pages = usePages();
  const list = useQuery(AlertService.method.listAlerts, { unacknowledgedOnly: openOnly, pageSize: 50, pageToken: pages.token });
  const queryClient = useQueryClient();
  // Every alert answer on screen changes (the list, the menu's open count, the overview's).
  const ack = useMutation(AlertService.method.acknowledgeAlerts, {
    onSuccess: () => {
      for (const schema of [AlertService, FleetService])
        void queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema, cardinality: undefined }) });
    },
  });
  const open = list.data?.alerts.filter((a) => !a.acknowledgedAt) ?? [];
  return (
    <>
      <div className="row">
        <label className="chip">
          <input
            type="checkbox"
            checked={openOnly}
            onChange={(e) => {
              setOpenOnly(e.target.checked);
              pages.reset();
            }}
          />
          open only
        </label>
        {canOperate && open.length > 0 && (
          <button type="button" onClick={() => ack.mutate({ alertIds: open.map((a) => a.id) })} disabled={ack.isPending}>
            Acknowledge {plural(open.length, "alert")} on this page
          </button>
        )}
      </div>
      <Outcome error={list.error ?? ack.error} />
      {list.data?.alerts.length === 0 && (
        <Empty title={openOnly ? "No open alerts." : "No alerts."}>Servers that go quiet raise one here (and by e-mail once set in Settings).</Empty>
      )}
      {list.data && list.data.alerts.length > 0 && (
        <div {...scrollRegion("Alerts")}>
          <table>
            <thead>
              <tr>
                <th>Raised</th>
                <th>Server</th>
                <th className="status">Kind</th>
                <th>Message</th>
                <th className="hide-narrow">E-mail</th>
                <th>Acknowledged</th>
              </tr>
            </thead>
            <tbody>
              {list.data.alerts.map((a) => (
                <tr key={String(a.id)}>
                  <td>{formatTime(a.raisedAt)}</td>
                  <td>
                    <Link to={`/servers/${a.serverId}`}>{a.serverName}</Link>
                  </td>
                  <td className="status">
                    <Badge word={a.kind === AlertKind.SERVER_UNREACHABLE ? "unreachable" : "online"} />
                  </td>
                  <td>{a.message}</td>
                  <td className="hide-narrow">{a.emailedAt ? formatTime(a.emailedAt) : a.emailError || "not sent"}</td>
                  <td>
                    {a.acknowledgedAt ? (
                      `${a.acknowledgedBy}, ${formatTime(a.acknowledgedAt)}`
                    ) : canOperate ? (
                      <button type="button" onClick={() => ack.mutate({ alertIds: [a.id] })}>
                        Acknowledge
                      </button>
                    ) : (
                      "—"
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {pages.pager(list.data?.nextPageToken, list.data ? `${plural(list.data.unacknowledged, "open alert")}` : undefined)}
    </>
  );
}

function Audit() {
  const [form, setForm] = useState({ actor: "", action: "", target: "", since: "", until: "", failuresOnly: false });
  const [filter, setFilter] = useState(form);
  const [exporting, setExporting] = useState<{ busy: boolean; error?: unknown }>({ busy: false });
  const pages = usePages();
  const request = {
    actor: filter.actor,
    action: filter.action,
    target: filter.target,
    failuresOnly: filter.failuresOnly,
    since: filter.since ? timestampFromDate(new Date(filter.since)) : undefined,
    until: filter.until ? timestampFromDate(new Date(filter.until)) : undefined,
  };
  const list = useQuery(AuditService.method.listAuditEvents, { filter: request, pageSize: 50, pageToken: pages.token }, { placeholderData: keepPreviousData });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setFilter(form);
    pages.reset();
  };
  const exportCsv = async () => {
    setExporting({ busy: true });
    try {
      const chunks: BlobPart[] = [];
      for await (const res of createClient(AuditService, transport).exportAuditEvents({ filter: request })) chunks.push(res.chunk as Uint8Array<ArrayBuffer>);
      download(`audit-${new Date().toISOString().slice(0, 10)}.csv`, chunks);
      setExporting({ busy: false });
    } catch (err) {
      setExporting({ busy: false, error: err });
    }
  };
  const field = (key: "actor" | "action" | "target" | "since" | "until", label: string, type = "text", placeholder = "") => (
    <label>
      {label}
      <input type={type} value={form[key]} placeholder={placeholder} onChange={(e) => setForm({ ...form, [key]: e.target.value })} />
    </label>
  );
  return (
    <>
      <form className="filters" aria-label="Filters" onSubmit={submit}>
        {field("actor", "Who", "text", "e-mail or API client")}
        {field("action", "Action", "text", "e.g. ServerService.")}
        {field("target", "Target contains")}
        {field("since", "Since", "datetime-local")}
        {field("until", "Until", "datetime-local")}
        <label className="chip">
          <input type="checkbox" checked={form.failuresOnly} onChange={(e) => setForm({ ...form, failuresOnly: e.target.checked })} />
          refused or failed only
        </label>
        <button type="submit">Filter</button>
        <button type="button" onClick={exportCsv} disabled={exporting.busy}>
          {exporting.busy ? "Exporting…" : "Export CSV"}
        </button>
      </form>
      <Outcome error={list.error ?? exporting.error} />
      {list.data?.events.length === 0 && <Empty title="No audit rows match." />}
      {list.data && list.data.events.length > 0 && (
        <div {...scrollRegion("Audit log")}>
          <table className="audit">
            <thead>
              <tr>
                <th>When</th>
                <th>Who</th>
                <th>Action</th>
                <th>Target</th>
                <th className="status">Outcome</th>
                <th className="hide-narrow">Address</th>
              </tr>
            </thead>
            <tbody>
              {list.data.events.map((e) => (
                <tr key={String(e.id)} data-action={e.action}>
                  <td>{formatTime(e.at)}</td>
                  <td>{e.actorName}</td>
                  <td>{e.action}</td>
                  <td className="wrap">{e.target}</td>
                  <td className="status" title={e.detail}>
                    <Badge word={e.outcome === "ok" ? "succeeded" : "failed"} />
                    {e.outcome !== "ok" && <span className="hint"> {e.outcome}</span>}
                  </td>
                  <td className="hide-narrow">{e.ip}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {pages.pager(list.data?.nextPageToken)}
    </>
  );
}
