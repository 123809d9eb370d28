import { sectionsOf, utf8Of, type OscamDocument } from "./document.js";
import { atoi, listOf, type LineWarning } from "./values.js";

/** The sections OScam's oscam.conf knows (OSCAM.md §2.1); names are case-sensitive. */
export const confSections = [
  "global",
  "anticasc",
  "cache",
  "lcd",
  "camd33",
  "cs357x",
  "cs378x",
  "newcamd",
  "radegast",
  "serial",
  "gbox",
  "cccam",
  "pandora",
  "scam",
  "streamrelay",
  "dvbapi",
  "monitor",
  "webif",
] as const;
export type ConfSection = (typeof confSections)[number];

/**
 * Keys whose values are secrets (OSCAM.md §2.5). They never appear in a view: the WebIF password
 * is read only through `webifPassword`, the DES keys inside newcamd port strings are cut out.
 */
export const confSecretKeys: Readonly<Record<string, readonly string[]>> = {
  webif: ["httppwd"],
  newcamd: ["key"],
  camd33: ["key"],
  gbox: ["my_password"],
  pandora: ["pand_pass"],
  streamrelay: ["stream_source_auth_password"],
};

/** One listening port, as a summary safe to send (never a DES key). */
export interface ListenPort {
  port: number;
  caid?: string;
  provids?: string[];
  /** A per-port DES key `{…}` is configured (its value is not read into the view). */
  perPortDesKey?: boolean;
}

export interface WebifView {
  enabled: boolean;
  port: number;
  ssl: boolean;
  user: string;
  passwordSet: boolean;
  refresh: number | undefined;
  allowed: string;
  readonly: boolean;
  serverip: string;
}

export interface ConfView {
  /** The effective value of every non-secret key of every known section (last value wins). */
  settings: Partial<Record<ConfSection, Record<string, string>>>;
  /** Sections present (known ones only), in file order, including empty ones. */
  sections: ConfSection[];
  webif: WebifView;
  /** Listening ports per protocol section. */
  ports: Partial<Record<ConfSection, ListenPort[]>>;
  global: {
    logfile: string;
    pidfile: string | null;
    nice: number;
    clienttimeoutMs: number | undefined;
    maxlogsizeKb: number | undefined;
    serverip: string;
    /** Not the account file: OScam's per-user activity log. */
    usrfile: string | null;
    reloadUseraccounts: boolean;
  };
  warnings: LineWarning[];
}

/**
 * What OScam would read from oscam.conf (OSCAM.md §2): keys before any header belong to
 * `[global]`; an unknown or mis-cased section (`[Webif]`) is ignored with its keys; the last
 * value of a key wins. Secrets are left out of the view.
 */
export function readConfFile(doc: OscamDocument): ConfView {
  const warnings: LineWarning[] = [];
  const settings: ConfView["settings"] = {};
  const sections: ConfSection[] = [];
  doc.lines.forEach((line, i) => {
    if (line.kind === "ignored") {
      warnings.push({
        line: i + 1,
        message: line.ignored === "tab_indented" ? "the line starts with a TAB: OScam ignores it" : "the line has no '=': OScam ignores it",
      });
    }
  });
  for (const span of sectionsOf(doc)) {
    const name = span.header < 0 ? "global" : span.name!;
    if (!(confSections as readonly string[]).includes(name)) {
      const known = confSections.find((s) => s === name.toLowerCase());
      warnings.push({
        line: span.header + 1,
        message: known
          ? `[${utf8Of(name)}]: section names are case-sensitive; OScam ignores it and its keys (write [${known}])`
          : `[${utf8Of(name)}] is not a section OScam knows: it ignores its keys`,
      });
      continue;
    }
    const section = name as ConfSection;
    if (span.header >= 0 && !sections.includes(section)) sections.push(section);
    const values = (settings[section] ??= {});
    for (const line of doc.lines.slice(span.start, span.end)) {
      if (line.kind !== "entry") continue;
      values[line.key!] = utf8Of(line.value!);
    }
  }
  const get = (section: ConfSection, key: string) => settings[section]?.[key];
  const ports: ConfView["ports"] = {};
  const portList = (section: ConfSection, parse: (text: string) => ListenPort[], key = "port") => {
    const text = get(section, key);
    if (text !== undefined && text.trim() !== "") ports[section] = parse(text);
  };
  portList("newcamd", parsePortsWithCaids);
  portList("cs378x", parsePortsWithCaids);
  portList("cccam", (t) => parsePortNumbers(t, ","));
  portList("gbox", (t) => parsePortNumbers(t, ","));
  for (const section of ["cs357x", "camd33", "radegast", "scam", "monitor"] as const) portList(section, (t) => parsePortNumbers(t, ","));
  portList("pandora", (t) => parsePortNumbers(t, ","), "pand_port");
  portList("dvbapi", (t) => parsePortNumbers(t, ","), "listen_port");
  portList("cache", (t) => parsePortNumbers(t, ","), "csp_port");
  if (get("streamrelay", "stream_relay_enabled") === "1") portList("streamrelay", (t) => parsePortNumbers(t, ","), "stream_relay_port");

  const httpport = get("webif", "httpport") ?? "";
  const webifPort = atoi(httpport.replace(/^\+/, ""));
  const clienttimeout = get("global", "clienttimeout");
  const timeout = clienttimeout === undefined ? undefined : atoi(clienttimeout);
  // Secrets never stay in the settings that leave the host.
  for (const [section, keys] of Object.entries(confSecretKeys)) for (const key of keys) delete settings[section as ConfSection]?.[key];
  if (settings.newcamd?.port !== undefined) settings.newcamd.port = settings.newcamd.port.replace(/\{[^}]*\}/g, "{…}");
  return {
    settings,
    sections,
    webif: {
      enabled: webifPort > 0,
      port: webifPort,
      ssl: httpport.trim().startsWith("+"),
      user: get("webif", "httpuser") ?? "",
      passwordSet: Boolean(webifPasswordOf(doc)),
      refresh: get("webif", "httprefresh") === undefined ? undefined : atoi(get("webif", "httprefresh")!),
      allowed: get("webif", "httpallowed") ?? "",
      readonly: atoi(get("webif", "httpreadonly") ?? "0") !== 0,
      serverip: get("webif", "serverip") ?? get("global", "serverip") ?? "",
    },
    ports,
    global: {
      logfile: get("global", "logfile") ?? "",
      pidfile: get("global", "pidfile") || null,
      nice: (() => {
        const n = atoi(get("global", "nice") ?? "99");
        return n < -20 || n > 20 ? 99 : n;
      })(),
      // A value below 10 is taken as seconds (OSCAM.md §2.4).
      clienttimeoutMs: timeout === undefined ? undefined : timeout < 10 ? timeout * 1000 : timeout,
      maxlogsizeKb: get("global", "maxlogsize") === undefined ? undefined : atoi(get("global", "maxlogsize")!),
      serverip: get("global", "serverip") ?? "",
      usrfile: get("global", "usrfile") || null,
      reloadUseraccounts: atoi(get("global", "reload_useraccounts") ?? "0") !== 0,
    },
    warnings,
  };
}

/** The WebIF password (a secret): only for storing it sealed on the panel, never for logs. */
export function webifPassword(doc: OscamDocument): string {
  return webifPasswordOf(doc);
}

function webifPasswordOf(doc: OscamDocument): string {
  let inWebif = false;
  let value = "";
  for (const line of doc.lines) {
    if (line.kind === "section") inWebif = line.section === "webif";
    else if (inWebif && line.kind === "entry" && line.key === "httppwd") value = utf8Of(line.value!);
  }
  return value;
}

/** `12000,12001` → ports (zeros skipped, as OScam does). */
function parsePortNumbers(text: string, separator: string): ListenPort[] {
  return listOf(text, separator)
    .map((p) => atoi(p))
    .filter((p) => p > 0 && p < 65536)
    .map((port) => ({ port }));
}

/**
 * `port[{DESKEY}]@CAID[:provid,provid][;port…]` (newcamd, cs378x). The DES key is never read: only
 * whether one is there. A lone port (`15000`) is accepted; several ports without `@CAID` are not.
 */
export function parsePortsWithCaids(text: string): ListenPort[] {
  const result: ListenPort[] = [];
  for (const part of listOf(text, ";")) {
    const m = /^(\d+)\s*(\{[^}]*\})?\s*(?:@\s*([0-9A-Fa-f]{1,4})\s*(?::(.*))?)?$/.exec(part);
    if (!m) continue;
    const entry: ListenPort = { port: Number(m[1]) };
    if (m[3]) entry.caid = m[3];
    if (m[4] !== undefined) entry.provids = listOf(m[4], ",");
    if (m[2]) entry.perPortDesKey = true;
    result.push(entry);
  }
  return result;
}
