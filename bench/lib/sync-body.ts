/**
 * The body of an agent's first Sync (one instance of `accounts` accounts, as the fleet emulator
 * builds it): what the held-streams benchmark sends on each connection before holding its stream.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { SyncRequestSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { instanceSnapshots } from "../fleet/snapshot.js";

export function syncBody(accounts: number): Uint8Array {
  const snapshots = instanceSnapshots(1, [1, 1], [accounts, accounts]);
  return toBinary(SyncRequestSchema, create(SyncRequestSchema, { present: snapshots.map((s) => s.ref!), snapshots }));
}
