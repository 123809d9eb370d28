import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export const toDate = (t: Timestamp | undefined) => (t ? timestampDate(t) : undefined);

/** "Mar 3, 2026, 10:15:02", or an em dash when unset. */
export function formatTime(t: Timestamp | undefined): string {
  const d = toDate(t);
  return d ? dateTime.format(d) : "—";
}

/** "3 minutes ago" / "in 2 hours". */
export function formatAgo(t: Timestamp | undefined, now = Date.now()): string {
  const d = toDate(t);
  if (!d) return "never";
  const seconds = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return relative.format(seconds, "second");
  if (abs < 2700) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 64800) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

export function formatDuration(totalSeconds: bigint | number): string {
  let s = Number(totalSeconds);
  if (!s) return "—";
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s - h * 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min`;
}

export const formatMb = (mb: number) => (mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`);

/** The last part of an enum's name in words: SERVER_STATUS_ONLINE → "online". */
export function enumWord(names: Record<number, string>, value: number, prefix: string): string {
  const name = names[value] ?? "";
  return name.startsWith(prefix) ? name.slice(prefix.length).toLowerCase().replace(/_/g, " ") : "unknown";
}

/** "1, 2 3" → [1, 2, 3]: the groups an operator typed. */
export const parseGroups = (text: string) =>
  text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);

export const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString()} ${n === 1 ? one : many}`;
