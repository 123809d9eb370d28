import { useMutation, useQuery } from "@connectrpc/connect-query";
import { type FormEvent, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { type Rollout, RolloutServerState, RolloutService, RolloutState } from "../../../gen/myosicam/panel/v1/rollout_pb.js";
import { formatTime, plural } from "../api/format";
import { useCan } from "../app/session";
import { Badge, ConfirmDialog, Empty, Outcome, scrollRegion } from "../ui/common";

export const rolloutWord = (s: RolloutState) => RolloutState[s]?.toLowerCase() ?? "unknown";
const serverWord = (s: RolloutServerState) => RolloutServerState[s]?.toLowerCase() ?? "unknown";
const isActive = (s: RolloutState) => s === RolloutState.RUNNING || s === RolloutState.PAUSED || s === RolloutState.HALTED;
const mib = (bytes: bigint) => `${(Number(bytes) / 2 ** 20).toFixed(1)} MiB`;

/**
 * Agents: which versions the fleet runs, the uploaded releases, and staged rollouts (an admin
 * starts one; everyone follows it).
 */
export function AgentsPage() {
  const canStart = useCan(Role.ADMIN);
  const versions = useQuery(RolloutService.method.countAgentVersions, {}, { refetchInterval: 10_000 });
  const releases = useQuery(RolloutService.method.listReleases, {});
  const rollouts = useQuery(RolloutService.method.listRollouts, { limit: 50 }, { refetchInterval: 5_000 });
  const versionsUploaded = [...new Set(releases.data?.releases.map((r) => r.version) ?? [])];
  return (
    <section aria-labelledby="agents-title">
      <div className="page-head">
        <h1 id="agents-title">Agents</h1>
      </div>
      <h2>Versions running</h2>
      <Outcome error={versions.error} />
      {versions.data && versions.data.versions.length === 0 && <Empty title="No agent enrolled yet">Install a server to see its agent here.</Empty>}
      {versions.data && versions.data.versions.length > 0 && (
        <div {...scrollRegion("Agent versions")}>
          <table data-testid="agent-versions">
            <thead>
              <tr>
                <th>Version</th>
                <th>Servers</th>
                <th>Online</th>
              </tr>
            </thead>
            <tbody>
              {versions.data.versions.map((v) => (
                <tr key={v.version}>
                  <td>{v.version || "not reported"}</td>
                  <td>{v.servers.toLocaleString()}</td>
                  <td>{v.online.toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <h2>Releases</h2>
      <Outcome error={releases.error} />
      {releases.data && releases.data.releases.length === 0 && (
        <Empty title="No release uploaded">
          Build and sign one, then on the panel host: <code>npx myosicam release upload dist/agent</code> (docs/agent-upgrades.md).
        </Empty>
      )}
      {releases.data && releases.data.releases.length > 0 && (
        <div {...scrollRegion("Releases")}>
          <table>
            <thead>
              <tr>
                <th>Version</th>
                <th>Target</th>
                <th className="hide-narrow">Size (served)</th>
                <th className="hide-narrow">Key</th>
                <th>Uploaded</th>
              </tr>
            </thead>
            <tbody>
              {releases.data.releases.map((r) => (
                <tr key={`${r.version}/${r.target}`}>
                  <td>{r.version}</td>
                  <td>{r.target}</td>
                  <td className="hide-narrow">
                    {mib(r.size)} ({mib(r.compressedSize)})
                  </td>
                  <td className="hide-narrow">
                    <code>{r.keyId}</code>
                  </td>
                  <td>
                    {formatTime(r.uploadedAt)} by {r.uploadedBy}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      {canStart && versionsUploaded.length > 0 && <StartRollout versions={versionsUploaded} />}

      <h2>Rollouts</h2>
      <Outcome error={rollouts.error} />
      {rollouts.data && rollouts.data.rollouts.length === 0 && (
        <Empty title="No rollout yet">{canStart ? "Start one above once a release is uploaded." : "An admin starts them."}</Empty>
      )}
      {rollouts.data && rollouts.data.rollouts.length > 0 && (
        <div {...scrollRegion("Rollouts")}>
          <table>
            <thead>
              <tr>
                <th>Version</th>
                <th>State</th>
                <th>Progress</th>
                <th className="hide-narrow">Started</th>
              </tr>
            </thead>
            <tbody>
              {rollouts.data.rollouts.map((r) => (
                <tr key={r.id}>
                  <td>
                    <Link to={`/rollouts/${r.id}`}>{r.rollbackOf ? "roll back" : r.version}</Link>
                  </td>
                  <td>
                    <Badge word={rolloutWord(r.state)} />
                  </td>
                  <td className="counts">{progressWords(r)}</td>
                  <td className="hide-narrow">
                    {formatTime(r.createdAt)} by {r.createdBy}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

const progressWords = (r: Rollout) => `${r.succeeded}/${r.total} upgraded · ${r.sent} in progress · ${r.waiting} waiting · ${r.failed} failed`;

function StartRollout({ versions }: { versions: string[] }) {
  const navigate = useNavigate();
  const [version, setVersion] = useState(versions[0] ?? "");
  const [canary, setCanary] = useState(1);
  const [batch, setBatch] = useState(10);
  const [maxFailures, setMaxFailures] = useState(0);
  const [pauseOnFailure, setPauseOnFailure] = useState(false);
  const [confirm, setConfirm] = useState(false);
  const start = useMutation(RolloutService.method.startRollout, {
    onSuccess: (res) => navigate(`/rollouts/${res.rollout!.id}`),
  });
  // The question is outside the form: a dialog's own form may not sit inside another.
  return (
    <>
      <form
        className="wizard"
        aria-label="Start a rollout"
        onSubmit={(e: FormEvent) => {
          e.preventDefault();
          setConfirm(true);
        }}
      >
        <h2>Start a rollout</h2>
        <label>
          Version
          <select value={version} onChange={(e) => setVersion(e.target.value)}>
            {versions.map((v) => (
              <option key={v}>{v}</option>
            ))}
          </select>
        </label>
        <label>
          Canary servers
          <input type="number" min={1} max={1000} value={canary} onChange={(e) => setCanary(Number(e.target.value))} required />
        </label>
        <label>
          Each later batch (% of the servers)
          <input type="number" min={1} max={100} value={batch} onChange={(e) => setBatch(Number(e.target.value))} required />
        </label>
        <label>
          Failures tolerated before it halts
          <input type="number" min={0} max={20000} value={maxFailures} onChange={(e) => setMaxFailures(Number(e.target.value))} required />
        </label>
        <label className="inline">
          <input type="checkbox" checked={pauseOnFailure} onChange={(e) => setPauseOnFailure(e.target.checked)} />
          Also pause after any batch with a failure
        </label>
        <Outcome error={start.error} pending={start.isPending} pendingText="Starting…" />
        <button type="submit" className="primary" disabled={start.isPending || !version}>
          Start rollout
        </button>
      </form>
      <ConfirmDialog
        open={confirm}
        title={`Upgrade every agent that does not run ${version}?`}
        confirmLabel="Start rollout"
        busy={start.isPending}
        onClose={() => setConfirm(false)}
        onConfirm={() => {
          setConfirm(false);
          start.mutate({ version, canary, batchPercent: batch, maxFailures, pauseOnFailure });
        }}
      >
        <p>
          {plural(canary, "canary server")} first, then {batch}% of the servers at a time, each batch once the previous one heartbeats in the new version. An
          agent that fails rolls itself back.
        </p>
      </ConfirmDialog>
    </>
  );
}

/** One rollout, followed while it is active: counts, why it halted, every server, and its controls. */
export function RolloutPage() {
  const { rolloutId = "" } = useParams();
  const navigate = useNavigate();
  const canControl = useCan(Role.ADMIN);
  const [confirmRollback, setConfirmRollback] = useState(false);
  const detail = useQuery(
    RolloutService.method.getRollout,
    { id: rolloutId },
    { refetchInterval: (q) => (q.state.data?.rollout && !isActive(q.state.data.rollout.state) && q.state.data.rollout.sent === 0 ? false : 2_000) },
  );
  const pause = useMutation(RolloutService.method.pauseRollout, { onSuccess: () => void detail.refetch() });
  const resume = useMutation(RolloutService.method.resumeRollout, { onSuccess: () => void detail.refetch() });
  const cancel = useMutation(RolloutService.method.cancelRollout, { onSuccess: () => void detail.refetch() });
  const rollback = useMutation(RolloutService.method.rollBackRollout, { onSuccess: (res) => navigate(`/rollouts/${res.rollout!.id}`) });
  if (detail.error) return <Outcome error={detail.error} />;
  const r = detail.data?.rollout;
  if (!r) return <p className="splash">Loading…</p>;
  const done = r.succeeded + r.failed + r.skipped;
  return (
    <section aria-labelledby="rollout-title">
      <p className="crumbs">
        <Link to="/agents">Agents</Link> /
      </p>
      <div className="page-head">
        <h1 id="rollout-title">{r.rollbackOf ? "Roll back to the previous versions" : `Rollout to ${r.version}`}</h1>
        <Badge word={rolloutWord(r.state)} />
      </div>
      <p>
        Started {formatTime(r.createdAt)} by {r.createdBy} · canary {r.canary}, then {r.batchPercent}% per batch · {plural(r.maxFailures, "failure")} tolerated
        {r.pauseOnFailure ? " · pauses after a failure" : ""} · {plural(r.batchesSent, "batch", "batches")} sent
        {r.rollbackOf && (
          <>
            {" "}
            · undoes <Link to={`/rollouts/${r.rollbackOf}`}>an earlier rollout</Link>
          </>
        )}
      </p>
      <div className="progress" role="progressbar" aria-valuemin={0} aria-valuemax={r.total} aria-valuenow={done} aria-label="Servers finished">
        <span className="bar-ok" style={{ width: `${r.total ? (r.succeeded / r.total) * 100 : 0}%` }} />
        <span className="bar-bad" style={{ width: `${r.total ? (r.failed / r.total) * 100 : 0}%` }} />
      </div>
      <p className="counts" data-testid="rollout-counts">
        {progressWords(r)}
        {r.skipped ? ` · ${r.skipped} skipped` : ""}
      </p>
      {r.haltedReason && (
        <p className="notice warn" role="status" data-testid="rollout-reason">
          {r.haltedReason}
        </p>
      )}
      {canControl && (
        <div className="actions-bar">
          <button type="button" disabled={r.state !== RolloutState.RUNNING || pause.isPending} onClick={() => pause.mutate({ id: r.id })}>
            Pause
          </button>
          <button
            type="button"
            disabled={(r.state !== RolloutState.PAUSED && r.state !== RolloutState.HALTED) || resume.isPending}
            onClick={() => resume.mutate({ id: r.id })}
          >
            Resume
          </button>
          <button type="button" disabled={!isActive(r.state) || cancel.isPending} onClick={() => cancel.mutate({ id: r.id })}>
            Cancel
          </button>
          <button type="button" className="danger" disabled={rollback.isPending} onClick={() => setConfirmRollback(true)}>
            Roll back
          </button>
        </div>
      )}
      <Outcome error={pause.error ?? resume.error ?? cancel.error ?? rollback.error} />
      <ConfirmDialog
        open={confirmRollback}
        title="Return every server this rollout changed to its previous version?"
        confirmLabel="Roll back"
        danger
        busy={rollback.isPending}
        onClose={() => setConfirmRollback(false)}
        onConfirm={() => {
          setConfirmRollback(false);
          rollback.mutate({ id: r.id });
        }}
      >
        <p>This rollout is cancelled first; the roll back is a rollout of its own, in stages.</p>
      </ConfirmDialog>
      <h2>Servers</h2>
      <div {...scrollRegion("Servers of the rollout")}>
        <table>
          <thead>
            <tr>
              <th>Server</th>
              <th>State</th>
              <th>Version</th>
              <th className="hide-narrow">Batch</th>
              <th>Why</th>
            </tr>
          </thead>
          <tbody>
            {detail.data?.servers.map((s) => (
              <tr key={s.serverId}>
                <td>
                  <Link to={`/servers/${s.serverId}`}>{s.serverName}</Link>
                </td>
                <td>
                  <Badge word={serverWord(s.state)} />
                </td>
                <td>
                  {s.fromVersion || "?"} → {s.targetVersion}
                </td>
                <td className="hide-narrow">
                  {s.batch >= 0 ? (s.batch === 0 ? "canary" : s.batch) : "—"}
                  {s.online ? "" : " (was offline)"}
                </td>
                <td>{s.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
