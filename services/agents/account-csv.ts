import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";
import type { AccountRow, InstanceTarget } from "./account-store.js";

/** The account table as CSV (AccountService.ExportAccounts / ImportAccounts). Passwords are never exported. */

export const exportColumns = [
  "server",
  "instance",
  "user",
  "enabled",
  "state",
  "groups",
  "caid",
  "ident",
  "expiry_date",
  "description",
  "changed_at",
  "changed_by",
] as const;

/** Rows as CSV lines (with the header line first when `header`). */
export function accountsCsv(rows: readonly AccountRow[], header: boolean): string {
  const records = rows.map((r) => [
    r.server_name,
    r.instance_name,
    r.username,
    r.enabled ? "1" : "0",
    r.state,
    r.groups.join(","),
    r.caid,
    r.ident,
    r.expiry_date ?? r.unreadable_expiry,
    r.description,
    r.changed_at.toISOString(),
    r.changed_by,
  ]);
  return stringify(header ? [[...exportColumns], ...records] : records);
}

/** The columns an import reads; server, instance and user are required. */
export const importColumns = ["server", "instance", "user", "password", "enabled", "groups", "caid", "ident", "expiry_date", "description"] as const;

export interface ImportedRow {
  /** 1-based line of the CSV. */
  line: number;
  serverName: string;
  instanceName: string;
  user: string;
  instanceId?: string;
  fields: {
    password: string;
    disabled: boolean;
    groups: number[];
    caid: string;
    ident: string;
    expiryDate: string;
    description: string;
    extra: Array<{ key: string; value: string }>;
  };
  /** Why the row cannot be imported; undefined when it can (so far). */
  error?: string;
}

const truthy = new Set(["1", "true", "yes", "y", "enabled", ""]);
const falsy = new Set(["0", "false", "no", "n", "disabled"]);

/**
 * Reads a CSV of new accounts (a header line naming the columns, in any order, any case). Each
 * row is resolved to its instance by server and instance name and checked on its own: the field
 * checks OScam's rules need run when the rows are planned as a change set.
 */
export function parseAccountsCsv(csv: string, instances: readonly InstanceTarget[]): { rows: ImportedRow[] } {
  let records: string[][];
  try {
    records = parse(csv, { bom: true, relax_column_count: true, skip_empty_lines: true, trim: true }) as string[][];
  } catch (err) {
    return {
      rows: [{ line: 1, serverName: "", instanceName: "", user: "", fields: emptyFields(), error: `the CSV cannot be read: ${(err as Error).message}` }],
    };
  }
  if (records.length === 0) return { rows: [{ line: 1, serverName: "", instanceName: "", user: "", fields: emptyFields(), error: "the CSV is empty" }] };
  const header = records[0]!.map((h) => h.toLowerCase().trim());
  const missing = ["server", "instance", "user"].filter((c) => !header.includes(c));
  const unknown = header.filter((h) => !(importColumns as readonly string[]).includes(h));
  if (missing.length > 0 || unknown.length > 0) {
    const why = [
      missing.length ? `needs the column${missing.length > 1 ? "s" : ""} ${missing.join(", ")}` : "",
      unknown.length ? `has unknown columns ${unknown.join(", ")} (known: ${importColumns.join(", ")})` : "",
    ]
      .filter(Boolean)
      .join(" and ");
    return { rows: [{ line: 1, serverName: "", instanceName: "", user: "", fields: emptyFields(), error: `the header line ${why}` }] };
  }
  const byName = new Map(instances.map((i) => [`${i.server_name}\u0000${i.name}`, i]));
  return {
    rows: records.slice(1).map((record, i) => {
      const get = (column: (typeof importColumns)[number]) => {
        const at = header.indexOf(column);
        return at >= 0 ? (record[at] ?? "") : "";
      };
      const row: ImportedRow = { line: i + 2, serverName: get("server"), instanceName: get("instance"), user: get("user"), fields: emptyFields() };
      const enabled = get("enabled").toLowerCase();
      const groups = get("groups")
        .split(/[,; ]+/)
        .filter(Boolean)
        .map((g) => Number(g));
      row.fields = {
        password: get("password"),
        disabled: falsy.has(enabled),
        groups,
        caid: get("caid"),
        ident: get("ident"),
        expiryDate: get("expiry_date"),
        description: get("description"),
        extra: [],
      };
      const instance = byName.get(`${row.serverName}\u0000${row.instanceName}`);
      if (record.length > header.length) row.error = `the row has ${record.length} fields; the header has ${header.length}`;
      else if (!row.user) row.error = "user is empty";
      else if (!instance) row.error = `no instance "${row.instanceName}" on a server "${row.serverName}" you can see`;
      else if (!truthy.has(enabled) && !falsy.has(enabled)) row.error = `enabled is "${get("enabled")}"; write 1 or 0`;
      else if (groups.some((g) => !Number.isInteger(g) || g < 1 || g > 64)) row.error = `groups "${get("groups")}" are not numbers from 1 to 64`;
      row.instanceId = instance?.id;
      return row;
    }),
  };
}

const emptyFields = (): ImportedRow["fields"] => ({
  password: "",
  disabled: false,
  groups: [],
  caid: "",
  ident: "",
  expiryDate: "",
  description: "",
  extra: [],
});
