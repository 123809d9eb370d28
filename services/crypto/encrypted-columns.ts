import type { EncryptedColumn, HashedColumn } from "../lib/secrets/columns.js";

/** Every column of the panel's database that holds a crypto envelope sealed with PANEL_ENCRYPTION_KEY. */
export const encryptedColumns: readonly EncryptedColumn[] = [
  { table: "oscam_installs", column: "webif_password", idColumn: "id" },
  { table: "saved_servers", column: "ssh_credential_encrypted", idColumn: "id" },
  { table: "email_settings", column: "smtp_password", idColumn: "id" },
  { table: "email_settings", column: "mailgun_api_key", idColumn: "id" },
  { table: "email_configurations", column: "smtp_password", idColumn: "id" },
  { table: "email_configurations", column: "mailgun_api_key", idColumn: "id" },
  { table: "servers", column: "agent_token", idColumn: "id" },
  { table: "accounts", column: "password", idColumn: "id" },
  { table: "account_history", column: "password_before", idColumn: "id" },
  { table: "commands", column: "payload", idColumn: "id" },
  { table: "api_clients", column: "secret", idColumn: "id" },
  { table: "api_clients", column: "previous_secret", idColumn: "id" },
];

/**
 * Secret-looking columns of the panel's database that hold a one-way hash, never the secret (e.g.
 * install tokens are stored as SHA-256). Listed so the registry test can tell them from a
 * forgotten envelope.
 */
export const hashedColumns: readonly HashedColumn[] = [
  { table: "license_status", column: "key_hash" },
  { table: "install_tokens", column: "token_hash" },
  { table: "operators", column: "password_hash" },
  { table: "operator_sessions", column: "token_hash" },
];
