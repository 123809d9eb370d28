import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectQueryKey } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { createContext, type ReactNode, useContext, useEffect, useRef, useState } from "react";
import { AccountService } from "../../../gen/myosicam/panel/v1/account_pb.js";
import { AlertService } from "../../../gen/myosicam/panel/v1/alert_pb.js";
import { CommandService } from "../../../gen/myosicam/panel/v1/command_pb.js";
import { type FleetEvent, FleetService } from "../../../gen/myosicam/panel/v1/fleet_pb.js";
import { InstallService } from "../../../gen/myosicam/panel/v1/install_pb.js";
import { InstanceService } from "../../../gen/myosicam/panel/v1/instance_pb.js";
import { ServerService } from "../../../gen/myosicam/panel/v1/server_pb.js";
import { transport } from "./transport";

export type LiveState = "connecting" | "live" | "reconnecting";

interface Live {
  state: LiveState;
  /** Calls `listener` with every fleet event the page may see, until the returned function runs. */
  subscribe(listener: (event: FleetEvent) => void): () => void;
}

const LiveContext = createContext<Live>({ state: "connecting", subscribe: () => () => {} });

/** Which cached answers an event makes stale. */
const staleBy: Record<NonNullable<FleetEvent["change"]["case"]>, DescService[]> = {
  server: [ServerService, FleetService],
  instance: [InstanceService, ServerService, FleetService, AccountService],
  command: [CommandService],
  alert: [AlertService, FleetService],
  installJob: [InstallService],
};
const everything = [ServerService, FleetService, InstanceService, CommandService, AlertService, InstallService, AccountService];

/**
 * One `FleetService.WatchEvents` stream for the whole console (connect-query has no streaming):
 * each event marks the cached answers it touches stale, so the queries on screen refetch in place
 * (keeping what they show until the new answer arrives: nothing jumps). A dropped stream resumes
 * from its last cursor with backoff; `reset` and the first answer refresh everything.
 */
export function LiveUpdates({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [state, setState] = useState<LiveState>("connecting");
  const listeners = useRef(new Set<(event: FleetEvent) => void>());

  useEffect(() => {
    const client = createClient(FleetService, transport);
    const abort = new AbortController();
    const stale = new Set<DescService>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Events come in bursts (a fleet restart): one refetch per burst, not one per event.
    const markStale = (services: DescService[]) => {
      for (const s of services) stale.add(s);
      timer ??= setTimeout(() => {
        timer = undefined;
        for (const schema of stale) void queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema, cardinality: undefined }) });
        stale.clear();
      }, 150);
    };
    void (async () => {
      let cursor = 0n;
      let attempt = 0;
      let firstAnswer = true;
      while (!abort.signal.aborted) {
        try {
          for await (const res of client.watchEvents({ after: cursor }, { signal: abort.signal })) {
            // The first stream starts at the panel's newest event, and what the page fetched before
            // it was open may be older than that: refetched once, as after a reconnect or a reset.
            // (Not by the cursor: on a panel without events yet it stays 0 through every keepalive.)
            if (firstAnswer || attempt > 0 || res.reset) markStale(everything);
            firstAnswer = false;
            attempt = 0;
            setState("live");
            cursor = res.cursor;
            for (const event of res.events) {
              if (event.change.case) markStale(staleBy[event.change.case]);
              for (const listener of listeners.current) listener(event);
            }
          }
        } catch (err) {
          if (abort.signal.aborted) return;
          // Signed out: the session handler takes the page to sign-in.
          if (ConnectError.from(err).code === Code.Unauthenticated) return;
        }
        setState("reconnecting");
        attempt++;
        await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 15_000)));
      }
    })();
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [queryClient]);

  const subscribe = (listener: (event: FleetEvent) => void) => {
    listeners.current.add(listener);
    return () => listeners.current.delete(listener);
  };
  return <LiveContext.Provider value={{ state, subscribe }}>{children}</LiveContext.Provider>;
}

export const useLive = () => useContext(LiveContext);
