import { suite } from "uvu";
import * as assert from "uvu/assert";
import { makeTempDir, cliWith } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { oldKey } from "../helpers/keys.js";

const test = suite("`myosicam caller …` and `myosicam admin …` on admin's database");

let database: TestDatabase;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
const env = () => ({ MYOSICAM_DATA_DIR: dir.path, ADMIN_DATABASE_URL: database.url, ADMIN_ENCRYPTION_KEY: oldKey, LOG_LEVEL: "warn" });

const cli = cliWith(env);

test.before(async () => {
  dir = await makeTempDir("admin_cli");
  database = await createTestDatabase("admin_cli");
});
test.after(async () => {
  await database.drop();
  await dir.remove();
});

test("caller create prints the secret once; list never shows it; revoke and rotate change what list shows", async () => {
  const created = await cli<{ caller: { id: string }; secret: string }>([
    "caller",
    "create",
    "billing",
    "--allow",
    "/myosicam.license.v1.LicenseService/GetPlanCatalog",
    "--json",
  ]);
  assert.is(created.code, 0, created.stderr);
  assert.match(created.json!.secret, /^[0-9a-f]{64}$/);
  const rotated = await cli<{ secret: string; caller: { previousSecretValidUntil: string } }>(["caller", "rotate", "billing", "--overlap", "2h", "--json"]);
  assert.is(rotated.code, 0, rotated.stderr);
  assert.is.not(rotated.json!.secret, created.json!.secret);
  const until = Date.parse(rotated.json!.caller.previousSecretValidUntil) - Date.now();
  assert.ok(until > 7100_000 && until <= 7200_000, `old secret valid for 2 h, got ${until} ms`);
  assert.is((await cli(["caller", "revoke", "billing"])).code, 0);
  const list = await cli<{ callers: Array<{ id: string; status: string }> }>(["caller", "list", "--json"]);
  assert.equal(
    list.json!.callers.map((c) => [c.id, c.status]),
    [["billing", "inactive"]],
  );
  assert.not.ok(list.stdout.includes(created.json!.secret) || list.stdout.includes(rotated.json!.secret));
});

test("mistakes are one line saying what to do, exit 1", async () => {
  const typo = await cli(["caller", "create", "x", "--allow", "/myosicam.license.v1.LicenseService/Nope"]);
  assert.is(typo.code, 1);
  assert.match(typo.stderr, /^myosicam: allowed procedure .* has no method Nope; it has ValidateLicense, GetPlanCatalog, ReportUsage\n$/);
  const missing = await cli(["caller", "revoke", "ghost"]);
  assert.match(missing.stderr, /^myosicam: no caller "ghost"; see `npx myosicam caller list`\n$/);
  const noPlan = await cli(["admin", "license", "issue", "--plan", "nope", "--customer", "X"]);
  assert.match(noPlan.stderr, /no plan "nope"; create it with `npx myosicam admin plan set nope …`/);
  const badDate = await cli(["admin", "license", "issue", "--plan", "nope", "--customer", "X", "--expires", "2027-02-30"]);
  assert.is(badDate.code, 2);
  assert.match(badDate.stderr, /--expires takes a date YYYY-MM-DD/);
});

test("plans and licenses: set, issue (key shown once, stored hashed), list, revoke", async () => {
  const plan = await cli(["admin", "plan", "set", "pro", "--name", "Pro", "--max-servers", "50", "--max-instances", "200", "--price", "4900", "--json"]);
  assert.is(plan.code, 0, plan.stderr);
  const issued = await cli<{ licenseKey: string; license: { id: string; expiresAt: string } }>([
    "admin",
    "license",
    "issue",
    "--plan",
    "pro",
    "--customer",
    "Example Ltd",
    "--expires",
    "2027-12-31",
    "--json",
  ]);
  assert.is(issued.code, 0, issued.stderr);
  assert.is(issued.json!.license.expiresAt, "2027-12-31T23:59:59.999Z", "valid through the end of that day");
  const list = await cli(["admin", "license", "list"]);
  assert.match(list.stdout, /active\s+pro\s+Example Ltd\s+expires 2027-12-31/);
  assert.not.ok(list.stdout.includes(issued.json!.licenseKey));
  assert.is((await cli(["admin", "license", "revoke", issued.json!.license.id, "--reason", "unpaid"])).code, 0);
  assert.match((await cli(["admin", "license", "list"])).stdout, /revoked/);
});

test("admin operator create reads the password from stdin and refuses a short one", async () => {
  const short = await cli(["admin", "operator", "create", "--email", "a@example.com"], "short\n");
  assert.is(short.code, 1);
  assert.match(short.stderr, /at least 12 characters/);
  const ok = await cli(["admin", "operator", "create", "--email", "A@Example.com", "--json"], "a long enough passphrase\n");
  assert.is(ok.code, 0, ok.stderr);
  assert.match((await cli(["admin", "operator", "list"])).stdout, /^a@example\.com$/m);
});

test("keys status --database admin counts the caller secrets under admin's key", async () => {
  const status = await cli<{ database: string; columns: Array<{ table: string; column: string; byKeyId: Record<string, number> }> }>([
    "keys",
    "status",
    "--database",
    "admin",
    "--json",
  ]);
  assert.is(status.code, 0, status.stderr);
  assert.is(status.json!.database, "admin");
  const secrets = status.json!.columns.find((c) => c.table === "callers" && c.column === "secret");
  assert.equal(Object.values(secrets!.byKeyId), [1]);
});

test("every mutation left an audit row naming the operating-system user", async () => {
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const { rows } = await client.query("select actor, action from admin_audit order by id");
  await client.end();
  assert.equal(
    rows.map((r) => r.action),
    ["caller.create", "caller.rotate", "caller.revoke", "plan.set", "license.issue", "license.revoke", "operator.create"],
  );
  assert.ok(rows.every((r) => /^cli:/.test(r.actor)));
});

test.run();
