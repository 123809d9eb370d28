/**
 * Large account commands (issue: 10,000 changes must work): on the agent, `apply_accounts` of
 * 10,000 changes to a 10,000-account oscam.user — read, parse, edit, print, atomic replace with
 * backup (target ≤ 2 s; the WebIF reload is not part of it) — and on the panel, sealing such a
 * command and opening it again for delivery, with its size on the wire.
 *
 *   npm run bench -- apply-accounts
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary, toJson } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { applyAccounts } from "../agent/apply/apply-accounts.js";
import type { DiscoveredInstance } from "../agent/discovery/discover.js";
import { AccountOperation, ApplyAccountsSchema, CommandSchema } from "../gen/myosicam/agent/v1/agent_pb.js";
import { CryptoService } from "../gen/myosicam/crypto/v1/crypto_pb.js";
import { checkPayload } from "../services/agents/commands.js";
import { createCryptoService } from "../services/crypto/service.js";
import { createKeyring } from "../services/lib/secrets/keyring.js";
import { generateKeyHex } from "../services/lib/config-file.js";
import { createValidateInterceptor } from "@connectrpc/validate";
import { accountsFile, timed } from "./lib/timed.js";
import { stopAfter } from "./lib/deadline.js";

stopAfter("apply-accounts", 5);

const accounts = 10_000;
const root = await mkdtemp(join(tmpdir(), "myosicam-bench-apply-"));
try {
  const changes = Array.from({ length: 10_000 }, (_, i) =>
    i % 4 === 0
      ? {
          operation: AccountOperation.UPDATE,
          user: `user${i}`,
          set: [
            { key: "pwd", value: `new-${i}` },
            { key: "description", value: `renewed ${i}` },
          ],
        }
      : i % 4 === 1
        ? { operation: AccountOperation.DISABLE, user: `user${i}` }
        : i % 4 === 2
          ? { operation: AccountOperation.DELETE, user: `user${i}` }
          : {
              operation: AccountOperation.ADD,
              user: `new user ${i}`,
              set: [
                { key: "pwd", value: `pw-${i}` },
                { key: "group", value: "1" },
              ],
            },
  );
  const payload = create(ApplyAccountsSchema, { changes });

  // The agent: a fresh copy of the file each run, the WebIF off so that nothing waits on a reload.
  const instance = (dir: string): DiscoveredInstance => ({
    name: "bench",
    configDir: dir,
    tempDir: dir,
    pidFile: join(dir, "oscam.pid"),
    sources: ["configured"],
    files: { conf: true, user: true, server: false },
    running: false,
    webif: { enabled: false, host: "127.0.0.1", port: 0, ssl: false },
    problems: [],
  });
  const source = accountsFile(accounts);
  const agent = await timed(5, async (run) => {
    const dir = join(root, `run-${run}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "oscam.user"), source);
    await writeFile(join(dir, "oscam.conf"), "[global]\n");
    return applyAccounts(instance(dir), payload);
  });
  const written = (await readFile(join(root, "run-4", "oscam.user"), "utf8")).split("[account]").length - 1;
  console.log(
    `agent: apply_accounts of ${changes.length} changes to ${accounts} accounts: ${agent.ms.toFixed(0)} ms (target ≤ 2000 ms, ratio ${(agent.ms / 2000).toFixed(2)}); ${written} accounts after; "${agent.value.detail.slice(0, 60)}…"`,
  );

  // The panel: validate + seal when created, open + decode when delivered.
  const keyring = createKeyring(generateKeyHex());
  // KeyStatus (the only procedure that reads the database) is not called here.
  const service = createCryptoService({ keyring, db: undefined as never });
  const crypto = createClient(
    CryptoService,
    createRouterTransport((router) => router.service(CryptoService, service), { router: { interceptors: [createValidateInterceptor()] } }),
  );
  const json = toJson(ApplyAccountsSchema, payload);
  const sealed = await timed(5, async () => {
    const checked = checkPayload("apply_accounts", json);
    return crypto.encrypt({ plaintext: Buffer.from(JSON.stringify(checked.payload)), context: { table: "commands", column: "payload", rowId: "bench" } });
  });
  const opened = await timed(5, async () => {
    const { plaintext } = await crypto.decrypt({ envelope: sealed.value.envelope, context: { table: "commands", column: "payload", rowId: "bench" } });
    return JSON.parse(Buffer.from(plaintext).toString("utf8"));
  });
  const wire = toBinary(CommandSchema, create(CommandSchema, { payload: { case: "applyAccounts", value: payload } })).length;
  console.log(
    `panel: create (validate + seal) ${sealed.ms.toFixed(0)} ms, delivery (open + parse) ${opened.ms.toFixed(0)} ms; payload ${(JSON.stringify(json).length / 1024).toFixed(0)} KiB as JSON, envelope ${(sealed.value.envelope.length / 1024).toFixed(0)} KiB, ${(wire / 1024).toFixed(0)} KiB on the wire`,
  );
} finally {
  await rm(root, { recursive: true, force: true });
}
