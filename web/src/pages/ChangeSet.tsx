import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectQueryKey, useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import {
  type ChangeSet,
  AccountService,
  ChangeSetStatus,
  ChangeSource,
  type ChangeSetItem,
  ItemOperation,
  ItemStatus,
  type ListHistoryRequestSchema,
} from "../../../gen/myosicam/panel/v1/account_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { errorText } from "../api/errors";
import { formatTime, plural } from "../api/format";
import { transport } from "../api/transport";
import { useCan } from "../app/session";
import { Badge, ConfirmDialog, Empty, Outcome, scrollRegion } from "../ui/common";

export const changeSetWord = (s: ChangeSetStatus) => ChangeSetStatus[s]?.toLowerCase().replace(/_/g, " ") ?? "unknown";
const itemWord = (s: ItemStatus) => ItemStatus[s]?.toLowerCase() ?? "unknown";
const operationWord = (o: ItemOperation) => ItemOperation[o]?.toLowerCase() ?? "";

/**
 * A change set live: overall and per-instance counts streamed by WatchChangeSet until every item
 * is final, each account's result with the agent's words, "Retry failed" and "Revert".
 */
export function ChangeSetPage() {
  const { changeSetId = "" } = useParams();
  const navigate = useNavigate();
  const canOperate = useCan(Role.OPERATOR);
  const initial = useQuery(AccountService.method.getChangeSet, { changeSetId });
  const [live, setLive] = useState<{ changeSet?: ChangeSet; done: boolean; error?: string }>({ done: false });
  const [itemFilter, setItemFilter] = useState<ItemStatus | 0>(0);
  const [confirmRevert, setConfirmRevert] = useState(false);
  const items = useQuery(AccountService.method.listChangeSetItems, { changeSetId, statuses: itemFilter ? [itemFilter] : [], pageSize: 500 });
  const retry = useMutation(AccountService.method.retryChangeSet);
  const revert = useMutation(AccountService.method.revertChangeSet);
  const { refetch } = items;
  const queryClient = useQueryClient();

  // biome-ignore lint/correctness/useExhaustiveDependencies: a retry sends the failed accounts again: follow the change set anew
  useEffect(() => {
    const abort = new AbortController();
    setLive({ done: false });
    void (async () => {
      try {
        for await (const res of createClient(AccountService, transport).watchChangeSet({ changeSetId }, { signal: abort.signal })) {
          setLive({ changeSet: res.changeSet, done: res.done });
          // Done: every account answer is stale (this page's items, the table, histories, lists);
          // before that, the item list is fetched again only when some item changed.
          if (res.done) void queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: AccountService, cardinality: undefined }) });
          else if (res.items.length > 0) void refetch();
        }
      } catch (err) {
        if (!abort.signal.aborted) setLive((prev) => ({ ...prev, error: errorText(err) }));
      }
    })();
    return () => abort.abort();
  }, [changeSetId, refetch, retry.data, queryClient]);

  const cs = live.changeSet ?? initial.data?.changeSet;
  if (initial.error) return <Outcome error={initial.error} />;
  if (!cs) return <p className="splash">Loading…</p>;
  const c = cs.counts;
  const total = c ? c.pending + c.sent + c.applied + c.unchanged + c.failed : 0;
  const finished = c ? c.applied + c.unchanged + c.failed : 0;
  return (
    <section aria-labelledby="cs-title">
      <p className="crumbs">
        <Link to="/accounts">Accounts</Link> / <Link to="/activity?tab=change-sets">Change sets</Link> /
      </p>
      <div className="page-head">
        <h1 id="cs-title">Change set</h1>
        <Badge word={changeSetWord(cs.status)} />
        {!live.done && <span className="hint">live</span>}
      </div>
      <p>
        <strong>{cs.summary}</strong> {cs.description && `— ${cs.description}`}
      </p>
      <p className="hint">
        {cs.selection} · by {cs.createdBy} · {formatTime(cs.createdAt)}
        {cs.revertsChangeSetId && (
          <>
            {" "}
            · reverts <Link to={`/change-sets/${cs.revertsChangeSetId}`}>an earlier change set</Link>
          </>
        )}
        {cs.retries > 0 && ` · retried ${plural(cs.retries, "time")}`}
      </p>
      <div className="progress" role="progressbar" aria-valuemin={0} aria-valuemax={total} aria-valuenow={finished} aria-label="Accounts finished">
        <span className="bar-ok" style={{ width: `${total ? ((c!.applied + c!.unchanged) / total) * 100 : 0}%` }} />
        <span className="bar-bad" style={{ width: `${total ? (c!.failed / total) * 100 : 0}%` }} />
      </div>
      {c && (
        <p className="counts" data-testid="change-set-counts">
          {c.applied} applied · {c.unchanged} unchanged · {c.failed} failed · {c.pending + c.sent} waiting
        </p>
      )}
      {live.error && <p className="notice warn">Live view stopped: {live.error}</p>}
      {canOperate && (
        <div className="actions-bar">
          <button type="button" disabled={!c?.failed || retry.isPending} onClick={() => retry.mutate({ changeSetId })}>
            Retry failed
          </button>
          <button type="button" disabled={!live.done && cs.status === ChangeSetStatus.IN_PROGRESS} onClick={() => setConfirmRevert(true)}>
            Revert
          </button>
          <Outcome error={retry.error} done={retry.data ? "The failed accounts were sent again." : undefined} />
        </div>
      )}

      <h2>Per server</h2>
      <div {...scrollRegion("Results per server")}>
        <table>
          <thead>
            <tr>
              <th>Server / instance</th>
              <th className="num">Applied</th>
              <th className="num">Unchanged</th>
              <th className="num">Failed</th>
              <th className="num">Waiting</th>
              <th>Why it failed</th>
            </tr>
          </thead>
          <tbody>
            {cs.instances.map((i) => (
              <tr key={i.instanceId} data-instance={`${i.serverName}/${i.instanceName}`}>
                <td>
                  <Link to={`/servers/${i.serverId}`}>{i.serverName}</Link> / {i.instanceName}
                </td>
                <td className="num">{i.counts?.applied ?? 0}</td>
                <td className="num">{i.counts?.unchanged ?? 0}</td>
                <td className="num">{i.counts?.failed ?? 0}</td>
                <td className="num">{(i.counts?.pending ?? 0) + (i.counts?.sent ?? 0)}</td>
                <td className="wrap detail">{i.failureCode ? `${i.failureCode}: ${i.detail}` : i.detail || "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>

      <div className="row">
        <h2>Per account</h2>
        <label className="inline">
          Show
          <select value={itemFilter} onChange={(e) => setItemFilter(Number(e.target.value) as ItemStatus)}>
            <option value={0}>all</option>
            <option value={ItemStatus.FAILED}>failed</option>
            <option value={ItemStatus.APPLIED}>applied</option>
            <option value={ItemStatus.UNCHANGED}>unchanged</option>
            <option value={ItemStatus.PENDING}>pending</option>
          </select>
        </label>
      </div>
      {items.error && <Outcome error={items.error} />}
      {items.data?.items.length === 0 && <Empty title="No account in this view." />}
      {items.data && items.data.items.length > 0 && <ItemTable items={items.data.items} />}

      <ConfirmDialog
        open={confirmRevert}
        title="Revert this change set?"
        confirmLabel="Revert"
        danger
        busy={revert.isPending}
        onClose={() => setConfirmRevert(false)}
        onConfirm={() =>
          revert.mutate(
            { changeSetId, description: `revert of ${cs.summary}` },
            {
              onSuccess: (res) => {
                setConfirmRevert(false);
                navigate(`/change-sets/${res.changeSet?.id}`);
              },
            },
          )
        }
      >
        <p>This sends a new change set that puts every applied account back as it was before: created accounts are deleted, deleted ones recreated.</p>
        <Outcome error={revert.error} />
      </ConfirmDialog>
    </section>
  );
}

function ItemTable({ items }: { items: ChangeSetItem[] }) {
  return (
    <div {...scrollRegion("Results per account")}>
      <table>
        <thead>
          <tr>
            <th>Server / instance</th>
            <th>User</th>
            <th>Change</th>
            <th className="status">Result</th>
            <th>Details</th>
          </tr>
        </thead>
        <tbody>
          {items.map((i) => (
            <tr key={i.id} data-item={`${i.serverName}/${i.instanceName}/${i.user}`}>
              <td>
                {i.serverName} / {i.instanceName}
              </td>
              <td>{i.user}</td>
              <td>
                {operationWord(i.operation)} <FieldChanges changes={i.changes} />
              </td>
              <td className="status">
                <Badge word={itemWord(i.status)} />
              </td>
              <td className="wrap detail">{i.failureCode ? `${i.failureCode}: ${i.detail}` : i.detail || "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function FieldChanges({ changes }: { changes: Array<{ field: string; before: string; after: string }> }) {
  return (
    <ul className="diff">
      {changes.map((c) => (
        <li key={c.field}>
          <code>{c.field}</code> <del>{c.before || "∅"}</del> → <ins>{c.after || "∅"}</ins>
        </li>
      ))}
    </ul>
  );
}

/** History of one account or one change set, with field diffs; an entry made by a change set links to it (and its Revert). */
export function HistoryList({ of }: { of: MessageInitShape<typeof ListHistoryRequestSchema>["of"] }) {
  const history = useQuery(AccountService.method.listHistory, { of, pageSize: 100 });
  if (history.error) return <Outcome error={history.error} />;
  if (!history.data) return <p>Loading…</p>;
  if (history.data.entries.length === 0) return <Empty title="No changes recorded yet." />;
  return (
    <ol className="history">
      {history.data.entries.map((e) => (
        <li key={e.id}>
          <span className="hint">{formatTime(e.at)}</span> {operationWord(e.operation)} by{" "}
          {e.source === ChangeSource.OUTSIDE ? "someone outside the panel" : e.actor || "the panel"}
          {e.changeSetId && (
            <>
              {" "}
              · <Link to={`/change-sets/${e.changeSetId}`}>change set</Link>
            </>
          )}
          <FieldChanges changes={e.changes} />
        </li>
      ))}
    </ol>
  );
}
