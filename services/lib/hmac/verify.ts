import { timingSafeEqual } from "node:crypto";
import { hmacHeaders, signatureOf, type SignedParts } from "./canonical.js";

/** Why a signed request was refused; logged and audited, never shown in detail to the caller. */
export type HmacRefusal = "malformed" | "query_string" | "unknown_caller" | "inactive_caller" | "skew" | "bad_signature" | "replay" | "forbidden_method";

/** A caller as the verifier needs it. */
export interface KnownCaller {
  id: string;
  active: boolean;
  /** One secret, or two during a rotation window; any one may have signed. */
  secrets: readonly string[];
  /** Procedures it may call: exact paths or `/<service>/*`. */
  allowedProcedures: readonly string[];
}

/** What the verifier consults: callers, the clock, and the replay record. */
export interface HmacVerifierDeps {
  findCaller(callerId: string): Promise<KnownCaller | undefined>;
  /** Records (caller, nonce); answers false when it was already recorded (a replay). */
  recordNonce(callerId: string, nonce: string): Promise<boolean>;
  nowSeconds(): number;
  /** Largest accepted |now − timestamp|; DESIGN default 300. */
  skewSeconds: number;
}

/** The headers of a request, parsed but not yet trusted. */
export interface ClaimedSignature {
  callerId: string;
  timestamp: string;
  nonce: string;
  signature: string;
}

/** A refusal with its reason code. */
export class HmacError extends Error {
  override name = "HmacError";
  constructor(readonly reason: HmacRefusal) {
    super(`request refused: ${reason}`);
  }
}

const wellFormed = {
  callerId: /^[A-Za-z0-9_.:-]{1,128}$/,
  // Unix seconds as a plain integer: no sign, no leading zero (one spelling per value).
  timestamp: /^(0|[1-9]\d{0,11})$/,
  nonce: /^[0-9a-f]{32}$/,
  signature: /^[0-9a-f]{64}$/,
};

/** Reads the four headers; throws HmacError("malformed") when any is absent or ill-formed. */
export function claimedSignature(get: (name: string) => string | null): ClaimedSignature {
  const claimed = {
    callerId: get(hmacHeaders.callerId) ?? "",
    timestamp: get(hmacHeaders.timestamp) ?? "",
    nonce: get(hmacHeaders.nonce) ?? "",
    signature: get(hmacHeaders.signature) ?? "",
  };
  for (const [name, pattern] of Object.entries(wellFormed)) {
    if (!pattern.test(claimed[name as keyof ClaimedSignature])) throw new HmacError("malformed");
  }
  return claimed;
}

/** Whether `procedure` is in the allow-list (`/<service>/*` allows every method of a service). */
export function procedureAllowed(allowed: readonly string[], procedure: string): boolean {
  const service = procedure.slice(0, procedure.lastIndexOf("/") + 1);
  return allowed.some((entry) => entry === procedure || entry === `${service}*`);
}

/**
 * The checks that need no body, in DESIGN.md §3.1's order: caller known, caller active,
 * timestamp within the skew window (headers were checked by `claimedSignature`). Answers the caller.
 */
export async function checkBeforeBody(deps: HmacVerifierDeps, claimed: ClaimedSignature): Promise<KnownCaller> {
  const caller = await deps.findCaller(claimed.callerId);
  if (!caller) throw new HmacError("unknown_caller");
  if (!caller.active) throw new HmacError("inactive_caller");
  if (Math.abs(deps.nowSeconds() - Number(claimed.timestamp)) > deps.skewSeconds) throw new HmacError("skew");
  return caller;
}

/**
 * The checks that need the body's hash: the signature against every secret the caller holds
 * (constant time, all compared); then whether this caller may call `procedure` (only an
 * authenticated caller is told apart as forbidden); then the nonce, recorded only for a valid,
 * allowed request.
 */
export async function checkSignatureAndNonce(
  deps: HmacVerifierDeps,
  caller: KnownCaller,
  claimed: ClaimedSignature,
  procedure: string,
  bodySha256: string,
): Promise<void> {
  const parts: SignedParts = { callerId: claimed.callerId, timestamp: claimed.timestamp, nonce: claimed.nonce, procedure, bodySha256 };
  const given = Buffer.from(claimed.signature, "hex");
  let matched = false;
  for (const secret of caller.secrets) {
    const expected = Buffer.from(signatureOf(secret, parts), "hex");
    // Compare against every secret, so timing does not tell which one matched.
    matched = timingSafeEqual(expected, given) || matched;
  }
  if (!matched) throw new HmacError("bad_signature");
  if (!procedureAllowed(caller.allowedProcedures, procedure)) throw new HmacError("forbidden_method");
  if (!(await deps.recordNonce(claimed.callerId, claimed.nonce))) throw new HmacError("replay");
}
