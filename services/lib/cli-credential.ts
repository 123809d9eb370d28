import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "./atomic-file.js";

/**
 * What the `myosicam` CLI signs its operator-API calls with: an API client's id and secret, where
 * the panel is, and the panel's certificate (trusted and pinned, so a self-signed one works).
 */
export interface CliCredential {
  panelUrl: string;
  clientId: string;
  secret: string;
  /** PEM of the panel's certificate at the time the credential was written. */
  certificate: string;
}

/** On the panel host: written by the panel's first start into its data directory (mode 0600). */
export const localCredentialFile = (dataDir: string) => join(dataDir, "cli-credential.json");

/** Elsewhere: written by `myosicam login` (mode 0600 in a 0700 directory). */
export const userCredentialFile = (home: string) => join(home, ".config", "myosicam", "credentials.json");

/** The credential stored at `path`; undefined when there is no file, an Error when it is unusable. */
export async function readCliCredential(path: string): Promise<CliCredential | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let value: Partial<CliCredential>;
  try {
    value = JSON.parse(text) as Partial<CliCredential>;
  } catch {
    throw new Error(`${path} is not a MyOsicam credential (not JSON); remove it and sign in again with \`npx myosicam login\``);
  }
  const ok =
    typeof value.panelUrl === "string" &&
    /^https:\/\//.test(value.panelUrl) &&
    typeof value.clientId === "string" &&
    /^ac_[0-9a-f]{24}$/.test(value.clientId) &&
    typeof value.secret === "string" &&
    /^[0-9a-f]{64}$/.test(value.secret) &&
    typeof value.certificate === "string" &&
    value.certificate.includes("BEGIN CERTIFICATE");
  if (!ok) throw new Error(`${path} is not a complete MyOsicam credential; remove it and sign in again with \`npx myosicam login\``);
  return value as CliCredential;
}

/** Stores a credential readable by its owner only. */
export async function writeCliCredential(path: string, credential: CliCredential): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, `${JSON.stringify(credential, null, 2)}\n`, 0o600);
}
