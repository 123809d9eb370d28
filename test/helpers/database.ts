import { randomBytes } from "node:crypto";
import pg from "pg";
import { quoteIdentifier } from "../../services/lib/embedded-postgres.js";

/** A database created for one test file on the run's PostgreSQL; `drop` removes it. */
export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

function serverUrl(): URL {
  const url = process.env.MYOSICAM_TEST_POSTGRES_URL;
  if (!url) throw new Error("MYOSICAM_TEST_POSTGRES_URL is not set: run tests with `npm test`");
  return new URL(url);
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl().toString() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates a fresh, empty database named after `label`. */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `t_${label.replace(/[^a-z0-9]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
  await admin((c) => c.query(`create database ${quoteIdentifier(name)}`));
  const url = serverUrl();
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => admin((c) => c.query(`drop database if exists ${quoteIdentifier(name)} with (force)`)).then(() => {}),
  };
}
