/** Messages between the fleet emulator (bench/fleet/fleet.ts) and its worker processes (worker.ts). */

/** One simulated agent before it registers: its server name and its own install token. */
export interface AgentSeed {
  name: string;
  installToken: string;
}

/** How the simulated agents behave; the same for every worker of a fleet. */
export interface AgentBehaviour {
  /** Registrations started per second by this worker (the ramp). */
  rampPerSecond: number;
  /** Heartbeat interval; each one is sent at this ± 10 %, as the agent does. */
  heartbeatSeconds: number;
  /** Interval of the scheduled sync (instance hashes and host readings only), ± 10 %. */
  syncSeconds: number;
  /** OScam instances per agent, inclusive range. */
  instances: [number, number];
  /** Accounts per instance, inclusive range. */
  accounts: [number, number];
  /** Servers (by name) whose upgrades fail and are reported rolled back (tests of staged rollouts). */
  failUpgradesOn?: string[];
}

export type ToWorker = { type: "start"; url: string; ca: string; agents: AgentSeed[]; behaviour: AgentBehaviour; deadlineMs: number } | { type: "stop" };

/** Counts since the previous report, and the gauges as they are now. */
export interface WorkerReport {
  type: "report";
  registered: number;
  /** Latencies of the registrations of this period, ms. */
  registerMs: number[];
  synced: number;
  /** Latencies of the heartbeats answered in this period, ms. */
  heartbeatMs: number[];
  /** Command ids run for the first time, and ids delivered again (acknowledged, not run). */
  ran: string[];
  redelivered: string[];
  /** Results the panel acknowledged. */
  reported: number;
  /** Of those, results of a change after which a resync was owed (the panel did not take the instance's new hash). */
  resyncsOwed: number;
  /** Failed calls by "procedure: code". */
  failures: Record<string, number>;
  /** Of those, calls refused early with a retry hint (admission control). */
  refusedWithHint: number;
  /** Streams open right now (a stream counts once its first message arrived). */
  streamsOpen: number;
  /** The last distinct failure messages (a few), to say why in a report. */
  lastErrors: string[];
  /**
   * The longest the worker's own event loop was held up in this period, ms: a latency it measured
   * includes this much of its own delay, not the panel's.
   */
  loopDelayMaxMs: number;
}

export type FromWorker = WorkerReport | { type: "fatal"; message: string };
