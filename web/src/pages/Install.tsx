import { createClient } from "@connectrpc/connect";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { type FormEvent, useEffect, useRef, useState } from "react";
import { useNavigate } from "react-router";
import { type InstallJob, InstallJobState, InstallService, RootAccess, type SavedServer } from "../../../gen/myosicam/panel/v1/install_pb.js";
import { Role } from "../../../gen/myosicam/panel/v1/common_pb.js";
import { ServerService } from "../../../gen/myosicam/panel/v1/server_pb.js";
import { errorText } from "../api/errors";
import { formatTime } from "../api/format";
import { transport } from "../api/transport";
import { useCan } from "../app/session";
import { Badge, ConfirmDialog, Outcome, scrollRegion } from "../ui/common";

const jobWord = (s: InstallJobState) => InstallJobState[s]?.toLowerCase() ?? "unknown";

/**
 * The install wizard: where to connect (saved, credential sealed at once), how to become root and
 * which OScam directories to watch, then the install streamed step by step to the new server's page.
 */
export function InstallPage() {
  const [saved, setSaved] = useState<SavedServer>();
  const [jobId, setJobId] = useState<string>();
  const list = useQuery(InstallService.method.listSavedServers, {});
  const canSave = useCan(Role.ADMIN);
  return (
    <section aria-labelledby="install-title">
      <h1 id="install-title">Install a server</h1>
      <ol className="steps" aria-label="Steps">
        <li className={!saved ? "current" : "done"}>1. Connection</li>
        <li className={saved && !jobId ? "current" : jobId ? "done" : ""}>2. Root and OScam</li>
        <li className={jobId ? "current" : ""}>3. Install</li>
      </ol>
      {!saved &&
        (canSave ? (
          <ConnectionStep onSaved={setSaved} existing={list.data?.servers ?? []} />
        ) : (
          <p className="notice info">Saving a server's SSH credential needs the admin role: pick a server an admin saved below, or ask one to add it.</p>
        ))}
      {saved && !jobId && <RootStep server={saved} onStarted={setJobId} onBack={() => setSaved(undefined)} />}
      {saved && jobId && <ProgressStep server={saved} jobId={jobId} onRetry={() => setJobId(undefined)} />}
      {!saved && <SavedServers servers={list.data?.servers ?? []} onPick={setSaved} />}
    </section>
  );
}

function ConnectionStep({ onSaved, existing }: { onSaved(s: SavedServer): void; existing: SavedServer[] }) {
  const [name, setName] = useState("");
  const [host, setHost] = useState("");
  const [port, setPort] = useState("22");
  const [username, setUsername] = useState("root");
  const [auth, setAuth] = useState<"key" | "password">("key");
  const [secret, setSecret] = useState("");
  const add = useMutation(InstallService.method.addSavedServer);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    add.mutate(
      {
        name: name.trim(),
        host: host.trim(),
        port: Number(port) || 22,
        username: username.trim(),
        credential: auth === "key" ? { case: "privateKey", value: secret } : { case: "password", value: secret },
      },
      {
        onSuccess: (res) => {
          setSecret("");
          if (res.server) onSaved(res.server);
        },
      },
    );
  };
  const taken = existing.some((s) => s.name === name.trim());
  return (
    <form className="wizard" onSubmit={submit} aria-label="Connection">
      <label>
        Name in the panel
        <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="oscam-01" pattern="[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}" />
      </label>
      {taken && <p className="notice warn">A saved server has this name already: pick it below to install again.</p>}
      <label>
        Host (name or address)
        <input value={host} onChange={(e) => setHost(e.target.value)} required placeholder="203.0.113.7" />
      </label>
      <label>
        SSH port
        <input type="number" min={1} max={65535} value={port} onChange={(e) => setPort(e.target.value)} />
      </label>
      <label>
        SSH user
        <input value={username} onChange={(e) => setUsername(e.target.value)} required />
      </label>
      <fieldset className="chips">
        <legend>Sign in with</legend>
        <label className="chip">
          <input type="radio" name="auth" checked={auth === "key"} onChange={() => setAuth("key")} />a private key
        </label>
        <label className="chip">
          <input type="radio" name="auth" checked={auth === "password"} onChange={() => setAuth("password")} />a password
        </label>
      </fieldset>
      {auth === "key" ? (
        <>
          <label>
            Private key (OpenSSH or PEM, without a passphrase)
            <textarea
              rows={5}
              value={secret}
              onChange={(e) => setSecret(e.target.value)}
              required
              spellCheck={false}
              placeholder="-----BEGIN OPENSSH PRIVATE KEY-----"
            />
          </label>
          <label>
            or load the key file
            <input type="file" onChange={async (e) => setSecret((await e.target.files?.[0]?.text()) ?? "")} />
          </label>
        </>
      ) : (
        <label>
          Password
          <input type="password" autoComplete="off" value={secret} onChange={(e) => setSecret(e.target.value)} required />
        </label>
      )}
      <p className="hint">The credential is sealed as soon as it arrives and is never shown again. The host key is pinned at the first connection.</p>
      <Outcome error={add.error} />
      <button type="submit" className="primary" disabled={add.isPending}>
        {add.isPending ? "Saving…" : "Save and continue"}
      </button>
    </form>
  );
}

function RootStep({ server, onStarted, onBack }: { server: SavedServer; onStarted(jobId: string): void; onBack(): void }) {
  const [root, setRoot] = useState<RootAccess>(server.username === "root" ? RootAccess.DIRECT : RootAccess.SUDO_NOPASSWD);
  const [dirs, setDirs] = useState("");
  const [wait, setWait] = useState("120");
  const start = useMutation(InstallService.method.startInstall);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    start.mutate(
      {
        server: server.name,
        root,
        oscamDirs: dirs
          .split("\n")
          .map((d) => d.trim())
          .filter(Boolean),
        waitSeconds: Number(wait) || 0,
      },
      { onSuccess: (res) => onStarted(res.jobId) },
    );
  };
  return (
    <form className="wizard" onSubmit={submit} aria-label="Root and OScam">
      <p>
        Installing on <strong>{server.name}</strong> ({server.username}@{server.host}:{server.port})
        {server.hostKeyFingerprint ? `, host key ${server.hostKeyFingerprint}` : ", host key pinned at the first connection"}.
      </p>
      <fieldset>
        <legend>Become root by</legend>
        <label className="chip">
          <input type="radio" name="root" checked={root === RootAccess.DIRECT} onChange={() => setRoot(RootAccess.DIRECT)} />
          the user is root
        </label>
        <label className="chip">
          <input type="radio" name="root" checked={root === RootAccess.SUDO_PASSWORD} onChange={() => setRoot(RootAccess.SUDO_PASSWORD)} />
          sudo with the saved password
        </label>
        <label className="chip">
          <input type="radio" name="root" checked={root === RootAccess.SUDO_NOPASSWD} onChange={() => setRoot(RootAccess.SUDO_NOPASSWD)} />
          sudo without a password
        </label>
      </fieldset>
      <label>
        OScam config directories to watch, one per line (besides what the agent finds itself)
        <textarea rows={3} value={dirs} onChange={(e) => setDirs(e.target.value)} placeholder="/etc/oscam" spellCheck={false} />
      </label>
      <label>
        Wait for the agent's first heartbeat (seconds)
        <input type="number" min={10} max={1800} value={wait} onChange={(e) => setWait(e.target.value)} />
      </label>
      <Outcome error={start.error} />
      <div className="row">
        <button type="button" onClick={onBack}>
          ← Back
        </button>
        <button type="submit" className="primary" disabled={start.isPending}>
          {start.isPending ? "Starting…" : "Install the agent"}
        </button>
      </div>
    </form>
  );
}

function ProgressStep({ server, jobId, onRetry }: { server: SavedServer; jobId: string; onRetry(): void }) {
  const navigate = useNavigate();
  const [job, setJob] = useState<InstallJob>();
  const [steps, setSteps] = useState<Array<{ name: string; percent: number }>>([]);
  const [lines, setLines] = useState<string[]>([]);
  const [streamError, setStreamError] = useState<string>();
  const saved = useQuery(InstallService.method.listSavedServers, {});
  const found = useQuery(
    ServerService.method.listServers,
    { filter: { name: server.name }, pageSize: 1 },
    { enabled: job?.state === InstallJobState.SUCCEEDED },
  );
  const output = useRef<HTMLDivElement>(null);
  const { refetch } = saved;

  useEffect(() => {
    const abort = new AbortController();
    void (async () => {
      try {
        for await (const res of createClient(InstallService, transport).watchInstallJob({ jobId }, { signal: abort.signal })) {
          const u = res.update;
          if (u.case === "job") setJob(u.value);
          else if (u.case === "step") {
            const step = u.value;
            setSteps((prev) => [...prev, { name: step.name, percent: step.percent }]);
            void refetch();
          } else if (u.case === "outputLine") {
            const line = u.value;
            setLines((prev) => [...prev.slice(-1999), line]);
          }
        }
      } catch (err) {
        if (!abort.signal.aborted) setStreamError(errorText(err));
      }
    })();
    return () => abort.abort();
  }, [jobId, refetch]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: each new output line scrolls the log to its end
  useEffect(() => {
    const el = output.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines]);
  const newServer = found.data?.servers[0];
  useEffect(() => {
    if (newServer) navigate(`/servers/${newServer.id}`);
  }, [newServer, navigate]);

  const pinned = saved.data?.servers.find((s) => s.id === server.id)?.hostKeyFingerprint;
  const state = job?.state ?? InstallJobState.QUEUED;
  const failed = state === InstallJobState.FAILED || state === InstallJobState.CANCELLED;
  // The job message comes on state changes; the steps in between say where it is.
  const latest = steps.at(-1);
  const stepName = (latest?.name ?? job?.step) || "queued";
  const percent = Math.max(job?.percent ?? 0, latest?.percent ?? 0);
  return (
    <section className="wizard" aria-label="Install progress">
      <div className="row">
        <Badge word={jobWord(state)} />
        <span>
          {stepName} · {percent} %
        </span>
      </div>
      <div className="progress" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent} aria-label="Install progress">
        <span className={failed ? "bar-bad" : "bar-ok"} style={{ width: `${percent}%` }} />
      </div>
      <p>
        Host key: <code data-testid="host-key">{pinned || "not pinned yet"}</code>
      </p>
      {failed && (
        <div className="notice error" role="alert">
          The install stopped at “{job?.step}”: {job?.error || "no reason given"}
          <div>
            <button type="button" onClick={onRetry}>
              Change the settings and try again
            </button>
          </div>
        </div>
      )}
      {state === InstallJobState.SUCCEEDED && <p className="notice ok">Installed: opening the server's page…</p>}
      {streamError && <p className="notice warn">The live view stopped: {streamError}</p>}
      <ol className="install-steps">
        {steps.map((s) => (
          <li key={`${s.name}-${s.percent}`}>
            {s.name} <span className="hint">{s.percent} %</span>
          </li>
        ))}
      </ol>
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: the log scrolls; the keyboard must reach it to scroll it */}
      <div ref={output} className="output" role="log" aria-label="Install output" tabIndex={0}>
        {lines.join("\n")}
      </div>
    </section>
  );
}

function SavedServers({ servers, onPick }: { servers: SavedServer[]; onPick(s: SavedServer): void }) {
  const canAdmin = useCan(Role.ADMIN);
  const [forgetting, setForgetting] = useState<SavedServer>();
  const forget = useMutation(InstallService.method.forgetHostKey);
  const remove = useMutation(InstallService.method.removeSavedServer);
  const uninstall = useMutation(InstallService.method.startUninstall);
  const list = useQuery(InstallService.method.listSavedServers, {});
  if (servers.length === 0) return null;
  return (
    <>
      <h2>Saved servers</h2>
      <div {...scrollRegion("Saved servers")}>
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>SSH</th>
              <th>Host key</th>
              <th className="hide-narrow">Saved</th>
              <th>Actions</th>
            </tr>
          </thead>
          <tbody>
            {servers.map((s) => (
              <tr key={s.id}>
                <td>{s.name}</td>
                <td>
                  {s.username}@{s.host}:{s.port}
                </td>
                <td>
                  <code>{s.hostKeyFingerprint || "not pinned"}</code>
                </td>
                <td className="hide-narrow">
                  {formatTime(s.createdAt)} by {s.createdBy}
                </td>
                <td className="row-actions">
                  <button type="button" onClick={() => onPick(s)}>
                    Install
                  </button>
                  {canAdmin && s.hostKeyFingerprint && (
                    <button type="button" onClick={() => setForgetting(s)}>
                      Forget host key
                    </button>
                  )}
                  {canAdmin && (
                    <>
                      <button
                        type="button"
                        onClick={() => uninstall.mutate({ server: s.name, root: s.username === "root" ? RootAccess.DIRECT : RootAccess.SUDO_NOPASSWD })}
                      >
                        Uninstall
                      </button>
                      <button type="button" className="danger" onClick={() => remove.mutate({ server: s.name }, { onSuccess: () => void list.refetch() })}>
                        Remove
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Outcome
        error={remove.error ?? uninstall.error ?? forget.error}
        done={uninstall.data ? "Uninstall queued: Activity shows its progress." : forget.data ? `Forgot ${forget.data.forgottenFingerprint}.` : undefined}
      />
      <ConfirmDialog
        open={!!forgetting}
        title={`Forget the host key of ${forgetting?.name}?`}
        confirmLabel="Forget"
        danger
        busy={forget.isPending}
        onClose={() => setForgetting(undefined)}
        onConfirm={() => forget.mutate({ server: forgetting!.name }, { onSuccess: () => setForgetting(undefined) })}
      >
        <p>Only after the host was reinstalled: the next install trusts whatever key the host presents and pins it.</p>
      </ConfirmDialog>
    </>
  );
}
