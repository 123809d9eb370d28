import { randomUUID } from "node:crypto";
import type { Knex, Migration } from "./db.js";

/**
 * Every MyOsicam database knows which installation it belongs to: one row, created by the first
 * migration. The panel's id is what it presents to the license service; both ids show in `up`.
 */
export interface Installation {
  id: string;
  createdAt: Date;
}

/** Migrations every database gets before its services' own. */
export const installationMigrations: readonly Migration[] = [
  {
    name: "core/0001_installation",
    async up(db) {
      await db.schema.createTable("installation", (t) => {
        t.boolean("singleton").primary().defaultTo(true);
        t.uuid("id").notNullable();
        t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      });
      await db.raw("alter table installation add constraint installation_one_row check (singleton)");
      await db("installation").insert({ id: randomUUID() });
    },
  },
];

/** The installation row; exists once migrations ran. */
export async function getInstallation(db: Knex): Promise<Installation> {
  const row = await db("installation").first("id", "created_at");
  if (!row) throw new Error("the installation row is missing; run `npx myosicam migrate`");
  return { id: row.id, createdAt: row.created_at };
}
