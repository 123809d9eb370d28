import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { readFile, realpath, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { webifGet, WebifError, type WebifTarget } from "../apply/webif.js";
import { readConfFile, webifPassword, type ConfView } from "../oscam/conf-file.js";
import { OscamParseError, parseOscamFile } from "../oscam/document.js";
import { isOscamProgram } from "./cmdline.js";
import { findOscamProcesses, processArgv, processUptime, type OscamProcess } from "./processes.js";
import { defaultUnitDirs, findOscamUnits } from "./units.js";
import { parseVersionFile, type VersionFile } from "./version-file.js";

/** OScam's compile-time default config dir (`CS_CONFDIR`) and temp dir. */
export const defaultConfigDir = "/usr/local/etc";
export const defaultTempDir = "/tmp/.oscam";

export interface DiscoveryOptions {
  /** Config dirs the operator named (`--oscam-dir`, repeatable, or the agent's config file). */
  configDirs?: readonly string[];
  /** Where systemd units are looked for. */
  unitDirs?: readonly string[];
  /** The proc filesystem (a fixture tree in tests). */
  procRoot?: string;
  /** Ask each WebIF whether it answers (a GET of `/`); off for a dry look. */
  probeWebif?: boolean;
  probeTimeoutMs?: number;
}

export interface DiscoveredInstance {
  /** The unit instance name, else the config dir's last part. */
  name: string;
  configDir: string;
  tempDir: string;
  pidFile: string;
  /** How it was found. */
  sources: Array<"configured" | "systemd" | "process">;
  unit?: string;
  files: { conf: boolean; user: boolean; server: boolean };
  version?: string;
  commit?: string;
  running: boolean;
  pid?: number;
  uptimeSeconds?: number;
  webif: { enabled: boolean; host: string; port: number; ssl: boolean; answers?: boolean };
  /** Readers the running OScam instantiated and enabled, when its WebIF told. */
  readers?: { loaded: number; enabled: number };
  /** Protocol modules of the running binary, by oscam.conf section (from oscam.version), when known. */
  modules?: Record<string, boolean>;
  /** Why something could not be read (e.g. an oscam.conf that does not parse). */
  problems: string[];
}

const trimSlash = (dir: string) => (dir.length > 1 ? dir.replace(/\/+$/, "") : dir);
async function canonical(dir: string): Promise<string> {
  return trimSlash(await realpath(dir).catch(() => dir));
}
const exists = (path: string) =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  );

interface Candidate {
  configDir: string;
  tempDir?: string;
  pidFile?: string;
  unit?: string;
  sources: Set<DiscoveredInstance["sources"][number]>;
  processes: OscamProcess[];
}

/**
 * Finds every OScam instance on this host from configured dirs, systemd units and running
 * processes, deduplicated by config dir, and describes each: files, temp dir, pid file, version,
 * whether it runs, its WebIF. Needs no root; reads only oscam.conf of the OScam files (oscam.user
 * and oscam.server are read by the snapshot, oscam.server only for counting readers).
 */
export async function discoverInstances(options: DiscoveryOptions = {}): Promise<DiscoveredInstance[]> {
  const procRoot = options.procRoot ?? "/proc";
  const byDir = new Map<string, Candidate>();
  const candidate = async (dir: string) => {
    const key = await canonical(dir);
    let c = byDir.get(key);
    if (!c) byDir.set(key, (c = { configDir: key, sources: new Set(), processes: [] }));
    return c;
  };
  for (const dir of options.configDirs ?? []) (await candidate(dir)).sources.add("configured");
  for (const unit of await findOscamUnits(options.unitDirs ?? defaultUnitDirs)) {
    const c = await candidate(unit.configDir ?? defaultConfigDir);
    c.sources.add("systemd");
    c.unit ??= unit.unit;
    c.tempDir ??= unit.tempDir;
    c.pidFile ??= unit.pidFile;
  }
  for (const process of await findOscamProcesses(procRoot)) {
    const c = await candidate(process.configDir ?? defaultConfigDir);
    c.sources.add("process");
    c.tempDir ??= process.tempDir;
    c.pidFile ??= process.pidFile;
    c.processes.push(process);
  }
  const instances: DiscoveredInstance[] = [];
  for (const c of byDir.values()) instances.push(await describe(c, procRoot, options));
  // Byte order, not localeCompare: the same order on every host whatever its locale.
  return instances.sort((a, b) => (a.configDir < b.configDir ? -1 : a.configDir > b.configDir ? 1 : 0));
}

async function describe(c: Candidate, procRoot: string, options: DiscoveryOptions): Promise<DiscoveredInstance> {
  const problems: string[] = [];
  const files = {
    conf: await exists(join(c.configDir, "oscam.conf")),
    user: await exists(join(c.configDir, "oscam.user")),
    server: await exists(join(c.configDir, "oscam.server")),
  };
  let conf: ConfView | undefined;
  let webifPwd = "";
  if (files.conf) {
    try {
      const doc = parseOscamFile(await readFile(join(c.configDir, "oscam.conf")), "oscam.conf");
      conf = readConfFile(doc);
      webifPwd = webifPassword(doc);
    } catch (err) {
      problems.push(err instanceof OscamParseError ? err.message : `oscam.conf cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  const tempDir = trimSlash(c.tempDir ?? defaultTempDir);
  const pidFile = c.pidFile ?? conf?.global.pidfile ?? join(tempDir, "oscam.pid");
  const version = await versionOf(tempDir, c.configDir);

  // The pid file holds the worker's pid (the supervisor's child); trust it only if that process is OScam.
  let pid: number | undefined;
  const recorded = Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
  if (Number.isInteger(recorded) && recorded > 0) {
    const argv = await processArgv(procRoot, recorded);
    if (argv && isOscamProgram(argv[0]!)) pid = recorded;
  }
  pid ??= c.processes.map((p) => p.pid).sort((a, b) => b - a)[0];
  const uptimeSeconds = pid === undefined ? undefined : await processUptime(procRoot, pid);

  const port = conf?.webif.port ?? version?.webifPort ?? 0;
  // A WebIF bound to every address (0.0.0.0, ::) is reached, and reported, on loopback.
  const bound = conf?.webif.serverip || "127.0.0.1";
  const webif = {
    enabled: port > 0,
    host: bound === "0.0.0.0" ? "127.0.0.1" : bound === "::" || bound === "[::]" ? "::1" : bound,
    port,
    ssl: conf?.webif.ssl ?? false,
    answers: undefined as boolean | undefined,
  };
  let readers: { loaded: number; enabled: number } | undefined;
  if (options.probeWebif && webif.enabled && pid !== undefined) {
    webif.answers = await answers(webif, options.probeTimeoutMs ?? 2000);
    // Answering is not enough: the credentials of oscam.conf must work, or every command fails.
    if (webif.answers) {
      const target = { ...webif, user: conf?.webif.user ?? "", password: webifPwd };
      const problem = await credentialProblem(target, options.probeTimeoutMs ?? 2000);
      if (problem) problems.push(problem);
      else readers = await loadedReaders(target, options.probeTimeoutMs ?? 2000);
    }
  }
  const unitInstance = c.unit ? /@(.+)\.service$/.exec(c.unit)?.[1] : undefined;
  return {
    name: unitInstance ?? (basename(c.configDir) || c.configDir),
    configDir: c.configDir,
    tempDir,
    pidFile,
    sources: [...c.sources],
    unit: c.unit,
    files,
    version: version?.version,
    commit: version?.commit,
    running: pid !== undefined,
    pid,
    uptimeSeconds,
    webif,
    modules: version?.modules ?? {},
    readers,
    problems,
  };
}

/**
 * How many readers the running OScam instantiated and how many are enabled (`readerlist`), or
 * undefined when the WebIF does not tell. Only counted: reader labels never leave the host.
 */
async function loadedReaders(target: WebifTarget, timeoutMs: number): Promise<{ loaded: number; enabled: number } | undefined> {
  const xml = await withinMs(
    webifGet(target, "/oscamapi.html?part=readerlist").catch(() => undefined),
    timeoutMs,
  );
  if (xml === undefined || !xml.includes("<readers")) return undefined;
  const readers = xml.match(/<reader\s[^>]*>/g) ?? [];
  return { loaded: readers.length, enabled: readers.filter((r) => /\senabled="1"/.test(r)).length };
}

/**
 * One authenticated request to the WebIF with the credentials of oscam.conf (digest auth, as the
 * commands use): a problem `webif_auth_failed: …` (or `webif_forbidden: …`) when it is refused.
 */
function credentialProblem(target: WebifTarget, timeoutMs: number): Promise<string | undefined> {
  return withinMs(
    webifGet(target, "/oscamapi.html?part=status").then(
      () => undefined,
      (err: unknown) =>
        err instanceof WebifError && (err.code === "webif_auth_failed" || err.code === "webif_forbidden") ? `${err.code}: ${err.message}` : undefined,
    ),
    timeoutMs,
  );
}

/** `work`'s answer, or undefined when it takes longer than `timeoutMs` (a WebIF that hangs must not hold up discovery). */
async function withinMs<T>(work: Promise<T>, timeoutMs: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `<tempdir>/oscam.version`, used only when its ConfigDir is this instance's (instances sharing a
 * temp dir overwrite each other's). Next to the config files is the fallback (the fixtures).
 */
async function versionOf(tempDir: string, configDir: string): Promise<VersionFile | undefined> {
  for (const file of [join(tempDir, "oscam.version"), join(configDir, "oscam.version")]) {
    const text = await readFile(file, "utf8").catch(() => undefined);
    if (text === undefined) continue;
    const parsed = parseVersionFile(text.slice(0, 64 * 1024));
    if (parsed.configDir === undefined || trimSlash(parsed.configDir) === configDir || file.startsWith(configDir)) return parsed;
  }
  return undefined;
}

/** Whether the WebIF answers HTTP at all (any status, even 401 or 403, counts). */
function answers(webif: { host: string; port: number; ssl: boolean }, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = webif.ssl ? httpsRequest : httpRequest;
    const req = request({ host: webif.host, port: webif.port, path: "/", method: "GET", timeout: timeoutMs, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end();
  });
}
