import { randomUUID } from "node:crypto";
import type { Knex } from "../../services/lib/db.js";
import type { Keyring } from "../../services/lib/secrets/keyring.js";

/** The plaintext a seeded row holds, keyed by `table.column.rowId`. */
export type SeededSecrets = Map<string, string>;

const chunk = 500;

async function insertRows(db: Knex, table: string, rows: Array<Record<string, unknown>>) {
  for (let i = 0; i < rows.length; i += chunk) await db(table).insert(rows.slice(i, i + chunk));
}

/**
 * Fills every registered encrypted column: `perTable` rows in each table (one in the singleton
 * email_settings), each secret sealed by `keyring` for its own row.
 */
export async function seedSecrets(db: Knex, keyring: Keyring, perTable: number): Promise<SeededSecrets> {
  const seeded: SeededSecrets = new Map();
  const seal = (table: string, column: string, rowId: string, value: string) => {
    seeded.set(`${table}.${column}.${rowId}`, value);
    return keyring.seal(Buffer.from(value), { table, column, rowId });
  };
  const ids = (n: number) => Array.from({ length: n }, () => randomUUID());

  await insertRows(
    db,
    "oscam_installs",
    ids(perTable).map((id, i) => ({
      id,
      instance_name: `oscam-${i}`,
      webif_username: "admin",
      webif_password: seal("oscam_installs", "webif_password", id, `webif-${i}-pw`),
    })),
  );
  await insertRows(
    db,
    "saved_servers",
    ids(perTable).map((id, i) => ({
      id,
      name: `server-${i}`,
      host: `10.0.${i % 250}.${i % 200}`,
      username: "root",
      auth_kind: "password",
      ssh_credential_encrypted: seal("saved_servers", "ssh_credential_encrypted", id, `ssh-${i}-secret`),
      created_by: "test",
    })),
  );
  await insertRows(
    db,
    "email_configurations",
    ids(perTable).map((id, i) => ({
      id,
      name: `route-${i}`,
      provider: i % 2 ? "smtp" : "mailgun",
      smtp_password: seal("email_configurations", "smtp_password", id, `smtp-${i}`),
      mailgun_api_key: seal("email_configurations", "mailgun_api_key", id, `key-${i}`),
    })),
  );
  const [settingsId] = ids(1);
  await db("email_settings").insert({
    id: settingsId,
    provider: "smtp",
    smtp_password: seal("email_settings", "smtp_password", settingsId!, "settings-smtp"),
    mailgun_api_key: seal("email_settings", "mailgun_api_key", settingsId!, "settings-mailgun"),
  });
  return seeded;
}
