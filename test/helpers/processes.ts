import { readFile } from "node:fs/promises";

/** The parent of process `pid` from /proc/<pid>/stat, or undefined when it is gone. */
export async function parentPid(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  // The name (in parentheses) may hold spaces: the fields after it are counted from its end.
  const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  return parent || undefined;
}
