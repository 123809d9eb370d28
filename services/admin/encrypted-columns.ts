import type { EncryptedColumn, HashedColumn } from "../lib/secrets/columns.js";

/** Every column of admin's database that holds a crypto envelope sealed with ADMIN_ENCRYPTION_KEY. */
export const adminEncryptedColumns: readonly EncryptedColumn[] = [
  { table: "callers", column: "secret", idColumn: "id" },
  { table: "callers", column: "previous_secret", idColumn: "id" },
];

/** Secret-looking columns of admin's database that hold a one-way hash, never the secret. */
export const adminHashedColumns: readonly HashedColumn[] = [
  { table: "licenses", column: "key_hash" },
  { table: "admin_operators", column: "password_hash" },
  { table: "admin_sessions", column: "token_hash" },
];
