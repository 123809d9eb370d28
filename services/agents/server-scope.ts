import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "../lib/db.js";
import type { ServerScope } from "../lib/principal.js";
import { selectServersInScope } from "./fleet-store.js";
import type { ServerRow } from "./store.js";

/**
 * The server of `id` when it is inside `scope`; NotFound otherwise, whether it does not exist or
 * is someone else's (ids outside a caller's scope do not leak).
 */
export async function serverInScope(db: Knex, scope: ServerScope, id: string): Promise<ServerRow> {
  const [row] = await selectServersInScope(db, scope, [id]);
  if (!row) throw new ConnectError(`no server ${id}; see ServerService.ListServers (\`npx myosicam agent list\`)`, Code.NotFound);
  return row;
}
