import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { chmod, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../services/lib/atomic-file.js";

/** What the agent keeps between runs, in `<state dir>/agent.json` (mode 0600). */
export interface AgentState {
  agentId: string;
  panelUrl: string;
  /** `sha256:<hex>` of the panel certificate, when pinned. */
  pin?: string;
  /** The pinned certificate (PEM), trusted instead of the system's CAs. */
  certificate?: string;
  serverId?: string;
  /** The agent token, sealed with the machine key (never stored in plaintext). */
  sealedToken?: string;
  heartbeatIntervalSeconds?: number;
  /** OScam config dirs to include besides what systemd units and processes show (`--oscam-dir`). */
  oscamDirs?: string[];
}

export const defaultStateDir = "/etc/myosicam-agent";
const stateFile = (dir: string) => join(dir, "agent.json");
const keyFile = (dir: string) => join(dir, "machine.key");

/**
 * The key that seals the agent token: HKDF-SHA256 of `/etc/machine-id` (so a copied state file is
 * useless on another machine), or of a random key file kept in the state directory (0600) where
 * there is no machine id.
 */
export async function machineKey(stateDir: string, machineIdFile = process.env.MYOSICAM_MACHINE_ID_FILE ?? "/etc/machine-id"): Promise<Buffer> {
  let material: Buffer;
  const machineId = (await readFile(machineIdFile, "utf8").catch(() => "")).trim();
  if (/^[0-9a-f]{32}$/.test(machineId)) material = Buffer.from(machineId, "hex");
  else {
    const existing = await readFile(keyFile(stateDir)).catch(() => undefined);
    if (existing?.length === 32) material = existing;
    else {
      material = randomBytes(32);
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      await writeFileAtomic(keyFile(stateDir), material, 0o600);
    }
  }
  return Buffer.from(hkdfSync("sha256", material, Buffer.from("myosicam-agent"), "myosicam-agent/token/v1", 32));
}

/** Seals the agent token: base64url(nonce ‖ ciphertext ‖ tag), AES-256-GCM. */
export function sealToken(key: Buffer, token: string): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(Buffer.from("myosicam-agent token"));
  const body = Buffer.concat([cipher.update(token, "utf8"), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString("base64url");
}

export function openToken(key: Buffer, sealed: string): string {
  const raw = Buffer.from(sealed, "base64url");
  if (raw.length < 12 + 16 + 1) throw new Error("the stored agent token is damaged; register again with a fresh install token");
  const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12));
  decipher.setAAD(Buffer.from("myosicam-agent token"));
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  try {
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString("utf8");
  } catch {
    throw new Error(
      "the stored agent token cannot be opened on this machine (machine id changed or state copied from elsewhere); register again with a fresh install token",
    );
  }
}

export async function readState(stateDir: string): Promise<AgentState | undefined> {
  let text: string;
  try {
    text = await readFile(stateFile(stateDir), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read ${stateFile(stateDir)} (${(err as NodeJS.ErrnoException).code})`);
  }
  try {
    return JSON.parse(text) as AgentState;
  } catch {
    throw new Error(`${stateFile(stateDir)} is not valid JSON; register again with a fresh install token`);
  }
}

/** Writes the state atomically with mode 0600 (the directory 0700). */
export async function writeState(stateDir: string, state: AgentState): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await chmod(stateDir, 0o700);
  await writeFileAtomic(stateFile(stateDir), JSON.stringify(state, null, 2) + "\n", 0o600);
}
