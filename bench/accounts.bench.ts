/**
 * Fleet-wide accounts (`npm run bench -- accounts`):
 *
 * 1. The account table: 50,000 accounts over 200 instances, listed through AccountService
 *    (signed as an API client over HTTPS/2) as a console asks: the first page, a page deep in by
 *    cursor, filters by state, group, CAID and free text, and a sort by expiry. p50 and p95 per
 *    page over 20 calls each (target ≤ 100 ms per page).
 * 2. One change set extending the expiry of 10,000 accounts spread over 100 simulated agents
 *    (each its own signed HTTP/2 connection with an open Subscribe stream, in a worker thread,
 *    answering every change applied): the time from the CreateChangeSet call until every
 *    per-account result is stored (target ≤ 5 s).
 *
 * Bounded: each phase has a deadline, and the whole run stops itself after 10 minutes.
 */
import { Worker } from "node:worker_threads";
import { createClient } from "@connectrpc/connect";
import { AccountService, AccountSort, AccountState } from "../gen/myosicam/panel/v1/account_pb.js";
import { localCredentialFile, readCliCredential } from "../services/lib/cli-credential.js";
import { createSignedTransport } from "../services/lib/hmac/signing-client.js";
import { enrollAgents, startBenchPanel } from "./lib/panel.js";

const tableInstances = 200;
const perInstance = 250;
const fanOutAgents = 100;
const perAgent = 100;
const runDeadlineMs = 10 * 60_000;

const hardStop = setTimeout(() => {
  console.error(`accounts: did not finish within ${runDeadlineMs / 60_000} minutes; stopping`);
  process.exit(1);
}, runDeadlineMs);
hardStop.unref();

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

/** Inserts one instance per server and `count` accounts in each, in bulk (as syncs would leave them). */
async function seedAccounts(db: import("../services/lib/db.js").Knex, serverIds: readonly string[], count: number, description: string, mixed: boolean) {
  const instances = serverIds.map((serverId) => ({
    id: crypto.randomUUID(),
    server_id: serverId,
    name: "main",
    config_dir: "/etc/oscam",
    content_hash: "0".repeat(64),
  }));
  for (let i = 0; i < instances.length; i += 500) await db("instances").insert(instances.slice(i, i + 500));
  await db.raw(
    `insert into accounts (id, instance_id, username, enabled, groups, caid, expiry_date, description, changed_by)
     select gen_random_uuid(), i.id, 'user-' || lpad(n::text, 4, '0'), not ? or n % 17 <> 0, array[1 + n % 5], case when n % 3 = 0 then '0963,098C' else '0500' end,
            case when ? and n % 4 = 0 then null else current_date + (n % 400 - 30) end, ? || ' box ' || n || case when n % 50 = 0 then ' living room' else '' end, 'bench'
       from unnest(?::uuid[]) as i(id), generate_series(1, ?) as n`,
    [mixed, mixed, description, instances.map((i) => i.id), count],
  );
  await db.raw("analyze accounts");
  return instances;
}

const panel = await startBenchPanel();
let fleet: Worker | undefined;
try {
  const credential = (await readCliCredential(localCredentialFile(panel.dataDir)))!;
  const accounts = createClient(
    AccountService,
    createSignedTransport({
      baseUrl: panel.url,
      credentials: { callerId: credential.clientId, secret: credential.secret },
      ca: panel.ca,
      defaultTimeoutMs: 60_000,
    }),
  );

  // 1. The table.
  const servers = Array.from({ length: tableInstances }, (_, n) => ({
    id: crypto.randomUUID(),
    name: `table-${String(n).padStart(3, "0")}`,
    status: "online",
    created_by: "bench",
  }));
  await panel.db("servers").insert(servers);
  await seedAccounts(
    panel.db,
    servers.map((s) => s.id),
    perInstance,
    "table",
    true,
  );
  console.log(`${tableInstances * perInstance} accounts over ${tableInstances} instances`);
  let deep = "";
  for (let page = 0; page < 20; page++) deep = (await accounts.listAccounts({ pageSize: 50, pageToken: deep })).nextPageToken;
  const queries: Array<[string, Parameters<typeof accounts.listAccounts>[0]]> = [
    ["first page (server, instance, user order)", { pageSize: 50 }],
    ["page 21 by cursor", { pageSize: 50, pageToken: deep }],
    ["state expiring (7 days)", { pageSize: 50, filter: { states: [AccountState.EXPIRING] } }],
    ["state expired or disabled", { pageSize: 50, filter: { states: [AccountState.EXPIRED, AccountState.DISABLED] } }],
    ["group 3 and CAID 0963", { pageSize: 50, filter: { group: 3, caid: "0963" } }],
    ["free text 'living room'", { pageSize: 50, filter: { query: "living room" } }],
    ["sorted by expiry, descending", { pageSize: 50, sort: AccountSort.EXPIRY, descending: true }],
  ];
  let worst = 0;
  for (const [name, request] of queries) {
    const times: number[] = [];
    let total = 0;
    for (let run = 0; run < 20; run++) {
      const start = performance.now();
      total = (await accounts.listAccounts(request)).total;
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    worst = Math.max(worst, percentile(times, 50));
    console.log(`list ${name}: p50 ${percentile(times, 50).toFixed(1)} ms, p95 ${percentile(times, 95).toFixed(1)} ms (${total} match)`);
  }
  console.log(`slowest page p50 ${worst.toFixed(1)} ms (target ≤ 100 ms per page)`);

  // 2. One change set to 100 agents.
  const enrolled = await enrollAgents(panel, fanOutAgents);
  await seedAccounts(
    panel.db,
    enrolled.map((a) => a.serverId),
    perAgent,
    "fanout",
    false,
  );
  let failures = 0;
  let onSubscribed!: () => void;
  const subscribed = new Promise<void>((resolve) => (onSubscribed = resolve));
  fleet = new Worker(new URL("./lib/agent-fleet.ts", import.meta.url), { workerData: { url: panel.url, ca: panel.ca, agents: enrolled } });
  fleet.on("message", (m: { subscribed?: number; failed?: string }) => {
    if (m.subscribed) onSubscribed();
    if (m.failed) {
      failures++;
      console.error(`an agent's stream failed: ${m.failed}`);
    }
  });
  fleet.on("error", (err) => console.error(`the agents' worker failed: ${err.message}`));
  await Promise.race([subscribed, new Promise((_, reject) => setTimeout(() => reject(new Error("the agents did not all subscribe within 60 s")), 60_000))]);
  const start = performance.now();
  const { changeSet } = await accounts.createChangeSet({
    description: "bench",
    selection: { selection: { case: "filter", value: { description: "fanout" } } },
    edits: [{ edit: { case: "extendExpiryDays", value: 30 } }],
  });
  const createdMs = performance.now() - start;
  const expected = changeSet!.counts!.pending;
  const deadline = Date.now() + 60_000;
  let stored = 0;
  while (stored < expected) {
    if (Date.now() > deadline) throw new Error(`only ${stored} of ${expected} per-account results stored after 60 s`);
    await new Promise((r) => setTimeout(r, 20));
    const [row] = await panel.db("change_set_items").where({ change_set_id: changeSet!.id, status: "applied" }).count({ n: "*" });
    stored = Number(row!.n);
  }
  const totalMs = performance.now() - start;
  const history = await panel.db("account_history").where({ change_set_id: changeSet!.id }).count({ n: "*" });
  console.log(
    `change set extending ${expected} accounts on ${fanOutAgents} agents: every per-account result stored after ${(totalMs / 1000).toFixed(2)} s (target ≤ 5 s); ` +
      `planning, storing and sending took ${createdMs.toFixed(0)} ms; ${history[0]!.n} history rows; stream failures ${failures}`,
  );
} finally {
  fleet?.postMessage("stop");
  await fleet?.terminate();
  await panel.stop();
}
