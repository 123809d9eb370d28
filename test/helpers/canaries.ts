import { cp, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");

/** Secret-bearing keys of a reader (OSCAM.md §4.1), plus an unknown secret-looking one. */
const readerSecretKeys = [
  "user",
  "password",
  "key",
  "pincode",
  "boxid",
  "boxkey",
  "rsakey",
  "deskey",
  "aeskeys",
  "ins7e",
  "k1_unique",
  "mod1",
  "nuid",
  "cwekey0",
  "stmkeys",
  "device",
  "aeskey",
];

/**
 * Copies the `main` fixture to `target` and plants a unique canary in every place whose value must
 * never leave the server: every secret key of oscam.server and oscam.conf, an unknown section, a
 * commented-out block and account, and files of the CA subsystem beside them. Answers the
 * canaries (value → where).
 */
export async function plantCanaries(target: string): Promise<Map<string, string>> {
  const canaries = new Map<string, string>();
  const canary = (where: string) => {
    const value = `CANARY${canaries.size.toString().padStart(3, "0")}x${where.replace(/[^A-Za-z0-9]/g, "")}`;
    canaries.set(value, where);
    return value;
  };
  await cp(join(fixtures, "main"), target, { recursive: true });
  const server = join(target, "oscam.server");
  await writeFile(
    server,
    (await readFile(server, "utf8")) +
      `\n[reader]\nlabel = canary_reader\nprotocol = newcamd\n${readerSecretKeys.map((k) => `${k} = ${canary(`server ${k}`)}`).join("\n")}\n`,
  );
  const conf = join(target, "oscam.conf");
  await writeFile(
    conf,
    (await readFile(conf, "utf8"))
      .replace(/^(key\s*=\s*).*$/m, `$1${canary("newcamd key")}`)
      .replace(/\{[0-9A-Fa-f]+\}/, `{${canary("newcamd port des key")}}`) +
      `\n[camd33]\nport = 10033\nkey = ${canary("camd33 key")}\n[gbox]\nmy_password = ${canary("gbox my_password")}\n` +
      `[pandora]\npand_pass = ${canary("pandora pand_pass")}\n[streamrelay]\nstream_source_auth_password = ${canary("streamrelay password")}\n` +
      `[webif_old]\nhttppwd = ${canary("unknown section")}\n#[webif]\n#httppwd = ${canary("commented-out block")}\n`,
  );
  const user = join(target, "oscam.user");
  await writeFile(user, (await readFile(user, "utf8")) + `\n#[account]\n#user = ghost\n#pwd = ${canary("commented-out account")}\n`);
  for (const file of ["oscam.keys", "SoftCam.Key", "oscam.srvid2", "oscam.dvbapi", "oscam.guess"]) await writeFile(join(target, file), `${canary(file)}\n`);
  return canaries;
}

/** The canaries (by where they were planted) found in `text`. */
export const leakedCanaries = (canaries: ReadonlyMap<string, string>, text: string) =>
  [...canaries].filter(([value]) => text.includes(value)).map(([, where]) => where);
