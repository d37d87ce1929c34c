/** Where the emit stage publishes CanonicalGraphUpdated: Kafka, or a Redis stream without a broker. */
import { randomBytes } from 'node:crypto';

export interface OutMessage {
  /** 32 lowercase hex chars. */
  rootId: string;
  sequenceNumber: bigint;
  /** The encoded message: a CanonicalGraphUpdated unless messageName says otherwise. */
  value: Uint8Array;
  /** The protobuf message name of `value` (Kafka header `message-name`); CanonicalGraphUpdated when absent. */
  messageName?: string;
  /** W3C trace context of the event that caused the message; a new trace is started when missing. */
  traceparent?: string;
  /** The pipeline generation that produced it (see pipeline/generation.ts). */
  generation?: string;
}

/** The newest message of a root in the output. */
export interface Tail {
  seq: bigint;
  /** The generation header of that message (null for messages from before generations). */
  generation: string | null;
  /** Its encoded CanonicalGraphUpdated. */
  value: Uint8Array | null;
}

/** The message every entry held before diffs existed, and the default. */
export const SNAPSHOT_MESSAGE_NAME = 'topology.CanonicalGraphUpdated';

/** Header (Kafka) / field (Redis sink) naming the pipeline generation that published a message. */
export const GENERATION_HEADER = 'atlas-generation';

export interface Sink {
  start(): Promise<void>;
  /**
   * Highest sequence_number already published per root, read back from the output itself;
   * only for `roots` when given.
   */
  lastSequences(roots?: readonly string[]): Promise<Map<string, bigint>>;
  /** The newest message of every root in the output, read back from the output itself. */
  tails(): Promise<Map<string, Tail>>;
  /**
   * Publishes in order and resolves once durably written. Throws on failure. Calling it again with
   * the same messages is safe: after a failure the sink reads back what landed and skips it.
   */
  publish(messages: readonly OutMessage[]): Promise<void>;
  stop(): Promise<void>;
}

/** Messages the output does not hold yet, given the last sequence published per root. */
export function unpublished(
  messages: readonly OutMessage[],
  last: ReadonlyMap<string, bigint>,
): OutMessage[] {
  return messages.filter((m) => m.sequenceNumber > (last.get(m.rootId) ?? 0n));
}

export function sequencesOf(tails: ReadonlyMap<string, Tail>): Map<string, bigint> {
  return new Map([...tails].map(([root, t]) => [root, t.seq]));
}

/** Keeps `candidate` when it is the root's newest so far. */
export function recordTail(tails: Map<string, Tail>, root: string, candidate: Tail): void {
  if (candidate.seq > (tails.get(root)?.seq ?? -1n)) tails.set(root, candidate);
}

export function rootsOf(messages: readonly OutMessage[]): string[] {
  return [...new Set(messages.map((m) => m.rootId))];
}

export function onlyRoots(found: Map<string, bigint>, roots?: readonly string[]): Map<string, bigint> {
  if (!roots) return found;
  const kept = new Map<string, bigint>();
  for (const root of roots) {
    const seq = found.get(root);
    if (seq !== undefined) kept.set(root, seq);
  }
  return kept;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/** The given traceparent when valid (W3C Trace Context), else the start of a new, unsampled trace. */
export function traceparentOf(given: string | undefined): string {
  const parts = given ? TRACEPARENT.exec(given) : null;
  if (parts && parts[1] !== 'ff' && !/^0+$/.test(parts[2]!) && !/^0+$/.test(parts[3]!)) return given!;
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`;
}
