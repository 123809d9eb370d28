import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";
import { CommandKind } from "../../../gen/myosicam/agent/v1/agent_pb.js";
import { AlertKind, AlertService } from "../../../gen/myosicam/panel/v1/alert_pb.js";
import { CommandService, CommandStatus } from "../../../gen/myosicam/panel/v1/command_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { type Instance, InstanceService } from "../../../gen/myosicam/panel/v1/instance_pb.js";
import { type Bootstrap, type Server, ServerService, ServerStatus } from "../../../gen/myosicam/panel/v1/server_pb.js";
import { commandKindWord, commandOutcome, isFinal, useWatchedCommands } from "../api/commands";
import { formatAgo, formatDuration, formatMb, formatTime } from "../api/format";
import { useCan } from "../app/session";
import { ranges, ResourceCharts } from "../ui/Charts";
import { CommandTable } from "../ui/CommandTable";
import { Badge, ConfirmDialog, Empty, Outcome, ShownOnce } from "../ui/common";
import { statusWord } from "./Overview";

export function ServerPage() {
  const { serverId = "" } = useParams();
  const server = useQuery(ServerService.method.getServer, { serverId });
  const instances = useQuery(InstanceService.method.listInstances, { serverId });
  if (server.error) return <Outcome error={server.error} />;
  if (!server.data?.server) return <p className="splash">Loading…</p>;
  const s = server.data.server;
  const reading = server.data.latestHostReading;
  return (
    <section aria-labelledby="server-title">
      <p className="crumbs">
        <Link to="/">Fleet</Link> /
      </p>
      <div className="page-head">
        <h1 id="server-title">{s.name}</h1>
        <Badge word={statusWord(s.status)} />
        {s.tags.map((t) => (
          <span key={t} className="tag">
            {t}
          </span>
        ))}
      </div>
      <ServerActions server={s} />
      <div className="facts">
        <Fact label="Host name" value={s.hostname} />
        <Fact label="Address (seen / reported)" value={[s.ip, s.reportedIp].filter(Boolean).join(" / ")} />
        <Fact label="System" value={[s.os, s.osVersion, s.arch].filter(Boolean).join(" ")} />
        <Fact label="Agent version" value={s.agentVersion} />
        <Fact label="Last seen" value={`${formatAgo(s.lastSeenAt)} (${formatTime(s.lastSeenAt)})`} />
        {s.unreachableSince && <Fact label="Unreachable since" value={formatTime(s.unreachableSince)} />}
        <Fact label="Registered" value={formatTime(s.registeredAt)} />
        <Fact label="Host uptime" value={formatDuration(s.uptimeSeconds)} />
        {reading && (
          <>
            <Fact label="CPU" value={`${reading.cpuPercent.toFixed(1)} %`} />
            <Fact label="Memory" value={`${formatMb(reading.memoryUsedMb)} of ${formatMb(reading.memoryTotalMb)}`} />
            <Fact label="Disk used" value={formatMb(reading.diskUsedMb)} />
            <Fact label="Load" value={reading.loadAverage.map((l) => l.toFixed(2)).join(" ")} />
          </>
        )}
      </div>

      <h2>OScam instances</h2>
      {instances.error && <Outcome error={instances.error} />}
      {instances.data && instances.data.instances.length === 0 && (
        <Empty title="The agent reports no OScam instance on this server.">
          It finds them by their systemd units, running processes and the config directories it was installed with (`--oscam-dir`). Resync after adding one.
        </Empty>
      )}
      {instances.data?.instances.map((i) => (
        <InstanceCard key={i.id} server={s} instance={i} />
      ))}

      <Resources server={s} instances={instances.data?.instances ?? []} />
      <ServerCommands serverId={s.id} />
      <ServerAlerts serverId={s.id} />
    </section>
  );
}

function Fact({ label, value }: { label: string; value: string }) {
  return (
    <div className="fact">
      <span className="fact-label">{label}</span>
      <span className="fact-value">{value || "—"}</span>
    </div>
  );
}

const verbs = [
  { kind: CommandKind.START, label: "Start", when: (i: Instance) => !i.running },
  { kind: CommandKind.STOP, label: "Stop", when: (i: Instance) => i.running },
  { kind: CommandKind.RESTART, label: "Restart", when: () => true },
  { kind: CommandKind.RELOAD, label: "Reload accounts", when: (i: Instance) => i.running },
];

function InstanceCard({ server, instance: i }: { server: Server; instance: Instance }) {
  const canOperate = useCan(Role.OPERATOR);
  const [asked, setAsked] = useState<(typeof verbs)[number] | undefined>();
  const [commandId, setCommandId] = useState<string>();
  const send = useMutation(CommandService.method.sendCommand);
  const watched = useWatchedCommands(commandId ? [commandId] : []);
  const command = commandId ? watched.byId.get(commandId) : undefined;
  return (
    <article className="instance" aria-label={`Instance ${i.name}`} data-instance={i.name}>
      <header className="row">
        <h3>{i.name}</h3>
        <Badge word={i.running ? "running" : "stopped"} />
        <span className="hint">
          {i.running ? `pid ${i.pid}, up ${formatDuration(i.uptimeSeconds)}` : "not running"} · OScam {i.version || "version unknown"}
        </span>
        {canOperate && (
          <span className="row-actions">
            {verbs
              .filter((v) => v.when(i))
              .map((v) => (
                <button key={v.kind} type="button" onClick={() => setAsked(v)}>
                  {v.label}
                </button>
              ))}
          </span>
        )}
      </header>
      {commandId && (
        <p className={`notice ${command && isFinal(command.status) ? (command.status === CommandStatus.SUCCEEDED ? "ok" : "error") : "info"}`} role="status">
          {commandKindWord(command?.kind ?? CommandKind.UNSPECIFIED)}: {commandOutcome(command)}
        </p>
      )}
      <div className="facts">
        <Fact label="Config directory" value={i.configDir} />
        <Fact
          label="WebIF"
          value={
            i.webif?.port
              ? `${i.webif.ssl ? "https" : "http"}://${i.webif.host}:${i.webif.port} · ${i.webif.reachable ? "reachable" : "unreachable"}${i.webif.readOnly ? " · read-only" : ""}`
              : "off"
          }
        />
        <Fact
          label="Readers"
          value={`${i.readerCount} configured${i.readersLoaded !== undefined ? `, ${i.readersLoaded} loaded, ${i.readersEnabled ?? 0} enabled` : ""}`}
        />
        <Fact label="Ports" value={i.ports.map((p) => `${p.protocol} ${p.port}${p.ssl ? " (ssl)" : ""}${p.active ? "" : " (not built in)"}`).join(", ")} />
        <Fact label="Synced" value={formatAgo(i.syncedAt)} />
        {i.driftedAccounts > 0 && (
          <div className="fact">
            <span className="fact-label">Changed outside the panel</span>
            <Link className="fact-value" to={`/accounts?server=${server.id}&drifted=1`}>
              {i.driftedAccounts} accounts
            </Link>
          </div>
        )}
      </div>
      {i.problems.length > 0 && (
        <ul className="problems">
          {i.problems.map((p) => (
            <li key={p}>{p}</li>
          ))}
        </ul>
      )}
      {i.settings.length > 0 && (
        <details>
          <summary>Configuration summary ({i.settings.length} settings of oscam.conf)</summary>
          <table className="compact">
            <tbody>
              {i.settings.map((c) => (
                <tr key={`${c.section}.${c.key}`}>
                  <td>[{c.section}]</td>
                  <td>{c.key}</td>
                  <td>{c.value}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
      <ConfirmDialog
        open={asked !== undefined}
        title={`${asked?.label} ${i.name} on ${server.name}?`}
        confirmLabel={asked?.label ?? ""}
        danger={asked?.kind === CommandKind.STOP || asked?.kind === CommandKind.RESTART}
        busy={send.isPending}
        onClose={() => setAsked(undefined)}
        onConfirm={() =>
          send.mutate(
            { targets: [{ serverId: server.id, instance: i.name }], kind: asked!.kind },
            {
              onSuccess: (res) => {
                setCommandId(res.commands[0]?.id);
                setAsked(undefined);
              },
            },
          )
        }
      >
        {asked?.kind === CommandKind.STOP && <p>Card sharing on this instance stops until it is started again.</p>}
        {asked?.kind === CommandKind.RESTART && <p>Card sharing on this instance stops for a few seconds.</p>}
        {send.error && <Outcome error={send.error} />}
      </ConfirmDialog>
    </article>
  );
}

function ServerActions({ server }: { server: Server }) {
  const canOperate = useCan(Role.OPERATOR);
  const canAdmin = useCan(Role.ADMIN);
  const navigate = useNavigate();
  const [dialog, setDialog] = useState<"bootstrap" | "revoke" | "remove" | undefined>();
  const [bootstrap, setBootstrap] = useState<Bootstrap>();
  const [typed, setTyped] = useState("");
  const approve = useMutation(ServerService.method.approveServers);
  const resync = useMutation(CommandService.method.sendCommand);
  const rerun = useMutation(ServerService.method.rerunBootstrap);
  const revoke = useMutation(ServerService.method.revokeServers);
  const remove = useMutation(ServerService.method.removeServer);
  const resyncId = resync.data?.commands[0]?.id;
  const watched = useWatchedCommands(resyncId ? [resyncId] : []);
  if (!canOperate) return null;
  const revokeError = revoke.data?.results.find((r) => !r.ok)?.error;
  const approveError = approve.data?.results.find((r) => !r.ok)?.error;
  return (
    <div className="actions-bar">
      {server.status === ServerStatus.PENDING && (
        <button type="button" className="primary" onClick={() => approve.mutate({ serverIds: [server.id] })} disabled={approve.isPending}>
          Approve
        </button>
      )}
      <button type="button" onClick={() => resync.mutate({ targets: [{ serverId: server.id, instance: "" }], kind: CommandKind.RESYNC })}>
        Resync
      </button>
      <button type="button" onClick={() => setDialog("bootstrap")}>
        Re-run bootstrap
      </button>
      {canAdmin && server.status !== ServerStatus.REVOKED && (
        <button type="button" className="danger" onClick={() => setDialog("revoke")}>
          Revoke
        </button>
      )}
      {canAdmin && (
        <button type="button" className="danger" onClick={() => setDialog("remove")}>
          Remove
        </button>
      )}
      <Outcome error={approve.error ?? resync.error} />
      {approveError && <p className="notice error">{approveError}</p>}
      {resyncId && <p className="notice info">Resync: {commandOutcome(watched.byId.get(resyncId))}</p>}
      {revoke.data && !revokeError && <p className="notice ok">Revoked: the agent's next call is refused. Re-run the bootstrap to enroll it again.</p>}

      <ConfirmDialog
        open={dialog === "bootstrap"}
        title={bootstrap ? `Bootstrap for ${server.name}` : `Re-run the bootstrap of ${server.name}?`}
        confirmLabel={bootstrap ? "Done" : "Issue a new install token"}
        busy={rerun.isPending}
        onClose={() => {
          setDialog(undefined);
          setBootstrap(undefined);
        }}
        onConfirm={() => {
          if (bootstrap) {
            setDialog(undefined);
            setBootstrap(undefined);
            return;
          }
          rerun.mutate({ serverId: server.id }, { onSuccess: (res) => setBootstrap(res.bootstrap) });
        }}
      >
        {!bootstrap && (
          <p>
            This issues a single-use install token for this server. When the agent registers with it, the agent's current token stops working: use it after a
            reinstall of the host or when the agent's identity was lost.
          </p>
        )}
        {bootstrap && (
          <>
            <ShownOnce label="Install token" value={bootstrap.installToken} />
            <ShownOnce label="Run as root on the server, beside deploy/bootstrap.sh (the token goes in on stdin)" value={bootstrap.command} multiline />
            <p className="hint">
              Valid until {formatTime(bootstrap.expiresAt)}. The panel's certificate fingerprint: {bootstrap.panelFingerprint}. The old agent token dies as soon
              as this one is used.
            </p>
          </>
        )}
        <Outcome error={rerun.error} />
      </ConfirmDialog>

      <ConfirmDialog
        open={dialog === "revoke"}
        title={`Revoke ${server.name}?`}
        confirmLabel="Revoke"
        danger
        busy={revoke.isPending}
        onClose={() => setDialog(undefined)}
        onConfirm={() => revoke.mutate({ serverIds: [server.id] }, { onSuccess: () => setDialog(undefined) })}
      >
        <p>The agent's token stops working at once: it can no longer sync or take commands. Its data stays; re-run the bootstrap to enroll it again.</p>
        {revokeError && <p className="notice error">{revokeError}</p>}
        <Outcome error={revoke.error} />
      </ConfirmDialog>

      <ConfirmDialog
        open={dialog === "remove"}
        title={`Remove ${server.name}?`}
        confirmLabel="Remove for good"
        danger
        disabled={typed !== server.name}
        busy={remove.isPending}
        onClose={() => setDialog(undefined)}
        onConfirm={() => remove.mutate({ serverId: server.id }, { onSuccess: () => navigate("/", { replace: true }) })}
      >
        <p>This deletes the server with its instances, accounts, commands and readings from the panel. The agent on the host is not uninstalled.</p>
        <label>
          Type the server's name to confirm
          <input value={typed} onChange={(e) => setTyped(e.target.value)} autoComplete="off" />
        </label>
        <Outcome error={remove.error} />
      </ConfirmDialog>
    </div>
  );
}

function Resources({ server, instances }: { server: Server; instances: Instance[] }) {
  const [params, setParams] = useSearchParams();
  const range = ranges.find((r) => r.id === params.get("range")) ?? ranges[0];
  const subject = instances.some((i) => i.id === params.get("of")) ? params.get("of")! : "";
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(params);
    value ? next.set(key, value) : next.delete(key);
    setParams(next, { replace: true });
  };
  return (
    <>
      <div className="row">
        <h2>Resources</h2>
        <label className="inline">
          Of
          <select value={subject} onChange={(e) => set("of", e.target.value)}>
            <option value="">the host</option>
            {instances.map((i) => (
              <option key={i.id} value={i.id}>
                instance {i.name}
              </option>
            ))}
          </select>
        </label>
        <fieldset className="segmented">
          <legend className="sr-only">Range</legend>
          {ranges.map((r) => (
            <button key={r.id} type="button" aria-pressed={r.id === range.id} onClick={() => set("range", r.id)}>
              {r.label}
            </button>
          ))}
        </fieldset>
      </div>
      <ResourceCharts key={`${subject}-${range.id}`} serverId={server.id} instanceId={subject} rangeSeconds={range.seconds} />
    </>
  );
}

function ServerCommands({ serverId }: { serverId: string }) {
  const list = useQuery(CommandService.method.listCommands, { serverId, pageSize: 20 });
  return (
    <>
      <h2>Commands</h2>
      {list.error && <Outcome error={list.error} />}
      {list.data?.commands.length === 0 && <Empty title="No commands yet.">Start, stop, restart or change accounts and they show here.</Empty>}
      {list.data && list.data.commands.length > 0 && <CommandTable commands={list.data.commands} label="Commands of this server" showServer={false} />}
    </>
  );
}

function ServerAlerts({ serverId }: { serverId: string }) {
  const list = useQuery(AlertService.method.listAlerts, { serverId, pageSize: 20 });
  return (
    <>
      <h2>Alerts</h2>
      {list.error && <Outcome error={list.error} />}
      {list.data?.alerts.length === 0 && <Empty title="No alerts for this server." />}
      {list.data && list.data.alerts.length > 0 && (
        <ul className="alerts">
          {list.data.alerts.map((a) => (
            <li key={String(a.id)}>
              <Badge word={a.kind === AlertKind.SERVER_UNREACHABLE ? "unreachable" : "online"} /> {formatTime(a.raisedAt)} — {a.message}
              {a.acknowledgedAt ? <span className="hint"> · acknowledged by {a.acknowledgedBy}</span> : null}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
