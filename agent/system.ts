import { readFile } from "node:fs/promises";
import { hostname, loadavg, networkInterfaces, platform, uptime } from "node:os";

/** What the agent reports about its host at registration. */
export async function hostFacts() {
  return {
    hostname: hostname().slice(0, 253) || "unknown",
    ip: primaryAddress(),
    os: platform(),
    osVersion: await osVersion(),
    arch: process.arch,
  };
}

/** The first non-internal IPv4 address (else IPv6, else loopback). */
function primaryAddress(): string {
  const all = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
  const external = all.filter((a) => !a.internal);
  return (external.find((a) => a.family === "IPv4") ?? external[0] ?? { address: "127.0.0.1" }).address;
}

/** "Debian GNU/Linux 12 (bookworm)" from /etc/os-release, or the kernel's platform. */
async function osVersion(): Promise<string> {
  const text = await readFile("/etc/os-release", "utf8").catch(() => "");
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1];
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
  return (pretty ?? platform()).replace(/[\x00-\x1f\x7f]/g, "").slice(0, 128);
}

export const hostUptimeSeconds = () => Math.floor(uptime());
export const loadAverage = () => {
  const [one = 0, five = 0, fifteen = 0] = loadavg();
  return { one, five, fifteen };
};
