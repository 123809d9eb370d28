import { createClient } from "@connectrpc/connect";
import { useEffect, useState } from "react";
import { CommandKind } from "../../../gen/myosicam/agent/v1/agent_pb.js";
import { type Command, CommandService, CommandStatus } from "../../../gen/myosicam/panel/v1/command_pb.js";
import { errorText } from "./errors";
import { transport } from "./transport";

const commands = createClient(CommandService, transport);

export const commandStatusWord = (s: CommandStatus) => CommandStatus[s]?.toLowerCase() ?? "unknown";
export const commandKindWord = (k: CommandKind) => CommandKind[k]?.toLowerCase().replace(/_/g, " ") ?? "unknown";
export const isFinal = (s: CommandStatus) => s === CommandStatus.SUCCEEDED || s === CommandStatus.FAILED || s === CommandStatus.EXPIRED;

/**
 * Follows commands to their end with `CommandService.WatchCommands`: answers each command as it
 * stands now, updated live, and whether all are final (or why following them failed).
 */
export function useWatchedCommands(ids: readonly string[]) {
  const [state, setState] = useState<{ byId: Map<string, Command>; done: boolean; error?: string }>({ byId: new Map(), done: false });
  const key = ids.join(",");
  useEffect(() => {
    if (!key) return;
    const abort = new AbortController();
    setState({ byId: new Map(), done: false });
    void (async () => {
      try {
        for await (const res of commands.watchCommands({ commandIds: key.split(",") }, { signal: abort.signal })) {
          setState((prev) => {
            const byId = new Map(prev.byId);
            for (const c of res.commands) byId.set(c.id, c);
            return { byId, done: res.done };
          });
        }
      } catch (err) {
        if (!abort.signal.aborted) setState((prev) => ({ ...prev, error: errorText(err) }));
      }
    })();
    return () => abort.abort();
  }, [key]);
  return state;
}

/** What a finished command means in words: the confirmed end state, or why it did not get there. */
export function commandOutcome(c: Command | undefined): string {
  if (!c) return "sending…";
  if (c.status === CommandStatus.PENDING) return "waiting for the agent…";
  if (c.status === CommandStatus.DELIVERED) return "the agent is on it…";
  if (c.status === CommandStatus.SUCCEEDED) return c.result || "done";
  if (c.status === CommandStatus.EXPIRED) return `expired: ${c.result || "the agent did not take it in time"}`;
  return `failed${c.failureCode ? ` (${c.failureCode})` : ""}: ${c.result || "no reason given"}`;
}
