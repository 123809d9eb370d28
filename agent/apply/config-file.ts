import { randomBytes } from "node:crypto";
import { chown, copyFile, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Where previous versions of an edited file are kept, inside its config dir. */
export const backupDirName = ".myosicam-backups";
/** How many previous versions of each file are kept. */
export const keptBackups = 10;

/**
 * Replaces an OScam config file so that OScam (or anyone) sees either the old or the new file,
 * never a mix: the previous version is kept as a timestamped backup (the last 10), the new bytes
 * go to a temp file in the same directory with the old file's mode (and owner, when this user may
 * set it), fsync, rename over, fsync the directory.
 */
export async function replaceConfigFile(path: string, bytes: Uint8Array, now = new Date()): Promise<{ backup: string }> {
  const dir = dirname(path);
  const name = basename(path);
  const before = await stat(path);
  // A write cut short (the agent killed mid-way) leaves its temp file: never the live file. Edits
  // of one file are serialised, so any such file here is stale.
  for (const stale of (await readdir(dir)).filter((f) => f.startsWith(`.${name}.`) && f.endsWith(".tmp"))) await unlink(join(dir, stale)).catch(() => {});
  const backups = join(dir, backupDirName);
  await mkdir(backups, { recursive: true, mode: 0o700 });
  const backup = join(backups, `${name}.${now.toISOString().replace(/[:.]/g, "-")}`);
  // A copy or temp file cut short (a full disk) is removed: nothing half-written stays behind.
  await copyFile(path, backup).catch(async (err: unknown) => {
    await unlink(backup).catch(() => {});
    throw err;
  });
  const temp = join(dir, `.${name}.${randomBytes(6).toString("hex")}.tmp`);
  const file = await open(temp, "wx", before.mode & 0o7777);
  try {
    await file.writeFile(bytes);
    await file.sync();
  } catch (err) {
    await file.close().catch(() => {});
    await unlink(temp).catch(() => {});
    await unlink(backup).catch(() => {});
    throw err;
  }
  await file.close();
  try {
    await chown(temp, before.uid, before.gid).catch((err: NodeJS.ErrnoException) => {
      // An unprivileged agent cannot give a file away; the file then belongs to the agent's user.
      if (err.code !== "EPERM") throw err;
    });
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await pruneBackups(backups, name);
  return { backup };
}

async function pruneBackups(backups: string, name: string): Promise<void> {
  const mine = (await readdir(backups)).filter((f) => f.startsWith(`${name}.`)).sort();
  for (const old of mine.slice(0, Math.max(0, mine.length - keptBackups))) await unlink(join(backups, old)).catch(() => {});
}
