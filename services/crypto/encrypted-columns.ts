/**
 * Every column that holds a crypto envelope, in one place: rotation walks this list, KeyStatus
 * counts it, and a test fails when a migration adds a secret-looking column missing from it.
 * A table's rows are addressed by `idColumn`, which is also the row id bound into each envelope.
 */
export interface EncryptedColumn {
  table: string;
  column: string;
  idColumn: string;
}

export const encryptedColumns: readonly EncryptedColumn[] = [
  { table: "oscam_installs", column: "webif_password", idColumn: "id" },
  { table: "saved_servers", column: "ssh_credential_encrypted", idColumn: "id" },
  { table: "email_settings", column: "smtp_password", idColumn: "id" },
  { table: "email_settings", column: "mailgun_api_key", idColumn: "id" },
  { table: "email_configurations", column: "smtp_password", idColumn: "id" },
  { table: "email_configurations", column: "mailgun_api_key", idColumn: "id" },
];

/**
 * Secret-looking columns that hold a one-way hash, never the secret (e.g. install tokens are
 * stored as SHA-256). Listed so the registry test can tell them from a forgotten envelope.
 */
export const hashedColumns: ReadonlyArray<{ table: string; column: string }> = [];

/** Column names that suggest a secret; each must be in one of the two lists above. */
export const secretColumnPattern = /password|secret|token|api_key|apikey|credential|private_key/i;
