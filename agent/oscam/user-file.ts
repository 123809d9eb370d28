import { oscamLineBytes, utf8Of, type OscamLineSource } from "./document.js";
import { atoi, expdateOf, listOf, type LineWarning } from "./values.js";

/** Keys OScam knows in an `[account]` section (OSCAM.md §3, `account_opts`). */
export const accountKeys = new Set([
  "disabled",
  "user",
  "pwd",
  "description",
  "hostname",
  "caid",
  "uniq",
  "sleepsend",
  "failban",
  "monlevel",
  "sleep",
  "suppresscmd08",
  "umaxidle",
  "keepalive",
  "au",
  "emmreassembly",
  "expdate",
  "allowedprotocols",
  "allowedtimeframe",
  "betatunnel",
  "group",
  "services",
  "preferlocalcards",
  "ident",
  "chid",
  "class",
  "max_connections",
  "no_wait_time",
  "cccmaxhops",
  "cccreshare",
  "cccignorereshare",
  "cccstealth",
  "fakedelay",
  "numusers",
  "penalty",
  "lb_nbest_readers",
  "lb_nfb_readers",
  "lb_nbest_percaid",
  "cwc_disable",
]);
const accountKeyPrefixes = ["cacheex", "disablecrccacheex", "acosc_"];
/** Whether OScam reads `key` (lower case) in an `[account]` section. */
export const isAccountKey = (key: string) => accountKeys.has(key) || accountKeyPrefixes.some((p) => key.startsWith(p));

/** Most provider ids OScam keeps per CAID (CS_MAXPROV); the rest are dropped. */
export const maxProvidsPerCaid = 32;
/** Highest valid group number. */
export const maxGroup = 64;

/** An account as OScam loads it. Text values are UTF-8; `raw` keeps every key's value as written. */
export interface Account {
  /** The name OScam uses: a duplicate gets `_x` appended, as OScam does. */
  user: string;
  /** The name as written in the file (differs from `user` only for a renamed duplicate). */
  userAsWritten: string;
  /** The password (a secret: only for storage as a crypto envelope, never logged). */
  pwd: string;
  disabled: boolean;
  group: number[];
  au: string;
  caid: string[];
  ident: Record<string, string[]>;
  chid: Record<string, string[]>;
  betatunnel: Array<{ fromCaid: string; srvid: string; toCaid: string }>;
  uniq: number;
  sleep: number;
  monlevel: number | undefined;
  /** `YYYY-MM-DD`, or null for never (or a date OScam cannot read, see `expdateValid`). */
  expdate: string | null;
  /** False when `expdate` is set but not a date OScam reads (e.g. `31.12.2025`): OScam treats it as expired. */
  expdateValid: boolean;
  description: string;
  allowedprotocols: string[];
  /** Keys OScam does not know, kept as written (lower-cased key → value). */
  unknown: Record<string, string>;
  /** Every key's effective value (the last one wins), lower-cased key → UTF-8 value. */
  raw: Record<string, string>;
  /** 0-based index of the `[account]` header line. */
  headerLine: number;
}

export interface UserFileView {
  accounts: Account[];
  /** Lines OScam ignores or reads differently than a person might expect, for the console to show. */
  warnings: LineWarning[];
}

/** Whether an account has expired on `today` (`YYYY-MM-DD`, local): valid through the end of its day. */
export function isExpired(account: Pick<Account, "expdate" | "expdateValid">, today: string): boolean {
  if (!account.expdateValid) return true;
  return account.expdate !== null && account.expdate < today;
}

/**
 * Reads the accounts OScam would load from oscam.user (OSCAM.md §3): `[account]` sections (header
 * case-insensitive), keys case-insensitive with the last value winning, duplicate names renamed
 * `name_x`, any non-zero `disabled` disabling. Says where a line is ignored.
 */
export function readUserFile(doc: OscamLineSource): UserFileView {
  const warnings: LineWarning[] = [];
  const accounts: Account[] = [];
  const taken = new Set<string>();
  if (doc.bom) warnings.push({ line: 1, message: "the file starts with a UTF-8 byte order mark: OScam ignores the keys of the first section" });
  // One pass over the lines; `current` is the account being read (undefined outside [account]).
  let current: { header: number; raw: Record<string, string>; unknown: Record<string, string>; user: string; userAsWritten: string } | undefined;
  let inSection = false;
  const finish = () => {
    if (!current) return;
    if (current.user) taken.add(current.user);
    accounts.push(accountOf(current, warnings));
    current = undefined;
  };
  let i = -1;
  for (const line of doc.lines) {
    i++;
    if (line.raw.length > oscamLineBytes) warnings.push({ line: i + 1, message: `the line is longer than ${oscamLineBytes} bytes: OScam reads it in pieces` });
    switch (line.kind) {
      case "ignored":
        warnings.push({
          line: i + 1,
          message: line.ignored === "tab_indented" ? "the line starts with a TAB: OScam ignores it" : "the line has no '=': OScam ignores it",
        });
        break;
      case "section":
        finish();
        inSection = true;
        if (line.section!.toLowerCase() !== "account")
          warnings.push({ line: i + 1, message: `[${utf8Of(line.section!)}] is not an [account] section: OScam ignores its keys` });
        // With a BOM, OScam does not recognise the first header: that account's keys are lost.
        else if (!(i === 0 && doc.bom)) current = { header: i, raw: {}, unknown: {}, user: "", userAsWritten: "" };
        break;
      case "entry": {
        if (!inSection) {
          warnings.push({ line: i + 1, message: "a key before the first [account] header: OScam ignores it" });
          break;
        }
        if (!current) break;
        const key = line.key!;
        const value = utf8Of(line.value!);
        // A key named like an object internal is unknown to OScam anyway; never let it touch the prototype.
        if (key === "__proto__" || key === "constructor" || key === "prototype") {
          warnings.push({ line: i + 1, message: `unknown key "${utf8Of(key)}": OScam ignores it` });
          break;
        }
        current.raw[key] = value;
        if (key === "user") {
          // The account being read takes part in the duplicate check, so `user` twice in one section renames too.
          current.userAsWritten = value;
          let name = value;
          while (taken.has(name) || (name === current.user && current.user !== "")) name += "_x";
          if (name !== value) warnings.push({ line: i + 1, message: `duplicate account name "${value}": OScam loads it as "${name}"` });
          current.user = name;
        } else if (!isAccountKey(key)) {
          current.unknown[key] = value;
          warnings.push({ line: i + 1, message: `unknown key "${utf8Of(key)}": OScam ignores it` });
        }
        break;
      }
    }
  }
  finish();
  return { accounts, warnings };
}

function accountOf(
  {
    user,
    userAsWritten,
    raw,
    unknown,
    header: headerLine,
  }: { user: string; userAsWritten: string; raw: Record<string, string>; unknown: Record<string, string>; header: number },
  warnings: LineWarning[],
): Account {
  const group: number[] = [];
  for (const entry of listOf(raw.group ?? "", ",")) {
    const n = digitsOnly.test(entry) ? Number(entry) : NaN;
    if (n >= 1 && n <= maxGroup) group.push(n);
    else warnings.push({ line: headerLine + 1, message: `account "${user}": group entry "${entry}" is not a number from 1 to ${maxGroup}: OScam drops it` });
  }
  const expdate = expdateOf(raw.expdate ?? "");
  return {
    user,
    userAsWritten,
    pwd: raw.pwd ?? "",
    disabled: atoi(raw.disabled ?? "0") !== 0,
    group,
    au: raw.au ?? "",
    caid: listOf(raw.caid ?? "", ","),
    ident: providerTable(raw.ident ?? "", user, "ident", headerLine, warnings),
    chid: providerTable(raw.chid ?? "", user, "chid", headerLine, warnings),
    betatunnel: listOf(raw.betatunnel ?? "", ",").flatMap((entry) => {
      const m = betatunnelEntry.exec(entry);
      return m ? [{ fromCaid: m[1]!, srvid: m[2]!, toCaid: m[3]! }] : [];
    }),
    uniq: atoi(raw.uniq ?? "0"),
    sleep: atoi(raw.sleep ?? "0"),
    monlevel: raw.monlevel === undefined ? undefined : atoi(raw.monlevel),
    expdate: expdate.date,
    expdateValid: expdate.valid,
    description: raw.description ?? "",
    allowedprotocols: listOf(raw.allowedprotocols ?? "", ","),
    unknown,
    raw,
    headerLine,
  };
}

const digitsOnly = /^\d+$/;
const betatunnelEntry = /^([0-9A-Fa-f]{1,4})\.([0-9A-Fa-f]{1,4}):([0-9A-Fa-f]{1,4})$/;

/** `CAID:id,id;CAID:id` → { CAID: [id, …] }, at most 32 ids per CAID as OScam keeps. */
function providerTable(text: string, user: string, key: string, headerLine: number, warnings: LineWarning[]): Record<string, string[]> {
  const table: Record<string, string[]> = {};
  for (const part of listOf(text, ";")) {
    const colon = part.indexOf(":");
    const caid = (colon < 0 ? part : part.slice(0, colon)).trim();
    const ids = colon < 0 ? [] : listOf(part.slice(colon + 1), ",");
    if (ids.length > maxProvidsPerCaid) {
      warnings.push({
        line: headerLine + 1,
        message: `account "${user}": ${key} lists ${ids.length} ids for CAID ${caid}; OScam keeps the first ${maxProvidsPerCaid}`,
      });
    }
    table[caid] = ids.slice(0, maxProvidsPerCaid);
  }
  return table;
}
