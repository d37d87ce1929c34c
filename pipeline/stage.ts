/** What a stage is to the runtime: a handler over batches of entries, plus a few declarations. */
import type { Redis } from 'ioredis';
import type { StateOp } from './commit.ts';
import type { Config } from './config.ts';
import type { JobHandler } from './control.ts';
import type { DeadLetterReason } from './dead-letter-reasons.ts';
import type { Entry, Fields } from './entry.ts';
import type { Generation } from './generation.ts';
import type { Keys } from './keys.ts';
import type { Logger } from './log.ts';

/** What a handler does with its inputs; all of it is committed atomically after `handle`. */
export interface Step {
  /** Appends an output entry (to the stage's output stream unless another is named). */
  send(fields: Fields, stream?: string): void;
  /**
   * Appends an output entry sent for `input`: the runtime adds the input's `received_at` and
   * `traceparent` (pipeline/carried.ts) unless `fields` sets them.
   */
  sendFor(input: Entry, fields: Fields, stream?: string): void;
  /** Marks an input done. Inputs neither acked nor dead-lettered stay pending. */
  ack(entry: Entry): void;
  /** Sends an input to the DLQ (with a skip marker when the stage declares one) and acks it. */
  deadLetter(entry: Entry, reason: DeadLetterReason, error: unknown): void;
  /** A checkpoint write, applied in the same atomic step. */
  write(op: StateOp, key: string, ...args: (string | Buffer)[]): void;
}

/** The lease an active singleton holds: a side effect outside Redis can check it is still current. */
/** A key whose value must still be `token` for a write to go through (a lease, the generation). */
export interface Fence {
  key: string;
  token: string;
}

export interface StageContext {
  config: Config;
  redis: Redis;
  keys: Keys;
  log: Logger;
  /** The lease this instance holds while active (singletons); undefined otherwise. */
  lease(): Fence | undefined;
}

/** What the runtime hands a stage when it becomes active. */
export interface Activation {
  /** The pipeline generation this instance joined (output is stamped with it). */
  generation: Generation;
}

export interface Stage {
  name: string;
  /**
   * The consumer group on `input`, and the name its order checkpoint and handling range are kept
   * under; default `name`. A chain reads as its first stage, so either form goes on where the
   * other left off.
   */
  group?: string;
  /**
   * The stages this one stands for in heartbeats (a chain: its stages), so the pipeline's
   * readiness and `atlas streams` see the same stages whichever form runs; default `[name]`.
   */
  parts?: string[];
  /** Stream names (without prefix). */
  input: string;
  output?: string;
  /**
   * Further streams the stage appends to by name (`step.send(fields, stream)`): their backlog
   * holds the stage back like its output's does (ATLAS_HIGH_WATER).
   */
  outputs?: string[];
  /** The runtime hands entries to `handle` in dense order of field `seq` (per value of field `key`). */
  order?: { seq: string; key?: string };
  /**
   * Fields copied from a dead-lettered input into a skip marker on the output, keeping it dense
   * (the runtime adds the carried ones, pipeline/carried.ts).
   */
  marker?: readonly string[];
  /** One active instance, holding a lease; further instances wait as hot standbys. */
  singleton?: boolean;
  /**
   * Runs when this instance becomes active; may say where the order stands per key. Throwing
   * StateLostError stops the pipeline (e.g. the output holds what this Redis never produced).
   */
  activate?(context: Activation): Promise<Map<string, bigint> | undefined>;
  handle(entries: Entry[], step: Step): Promise<void> | void;
  /**
   * An input the runtime dead-lettered itself (poison, unreadable, failed alone): a chain passes
   * its skip marker on to its later stages, in the place the input had in the batch.
   */
  skipped?(entry: Entry, reason: string, step: Step): Promise<void>;
  /** After a failed step: forget in-memory state that was not committed. */
  reset?(): Promise<void>;
  /** Timer-driven work, e.g. flushing conflated changes. */
  tick?: { everyMs: number; run(step: Step): Promise<void> | void };
  /** Control jobs of this stage (rebuild, snapshot…) by name, run by its active instance between batches. */
  jobs?: Record<string, JobHandler>;
  /**
   * The oldest input entry id the stage may still need (e.g. to rebuild its state from events):
   * retention keeps it and everything after, whatever ATLAS_RETAIN_*; null = no such need.
   */
  inputFloor?(): Promise<string | null>;
  /** Answers readiness beyond Redis (e.g. a sink's circuit); null when ready. */
  notReady?(): string | null;
  stop?(): Promise<void>;
}

export type StageFactory = (ctx: StageContext) => Stage | Promise<Stage>;

/**
 * A fault outside the data (a sink unreachable, a timeout): the step is retried with backoff,
 * for as long as it takes, and its inputs are never dead-lettered for it.
 */
export class TransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

/**
 * Another instance holds the stage's lease now (this one was paused or partitioned past it): the
 * step must not be retried, the worker steps down. Raised by the commit's fence check, and by a
 * sink whose own fencing (e.g. Kafka producer epochs) refused a write.
 */
export class FencedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FencedError';
  }
}

/**
 * The inputs came with a gap in an order a stage keeps (e.g. a chain's inner stage): some entries
 * before them are still pending elsewhere (under a dead or fenced instance, or ours and not read
 * again yet). Never guessed over, never a reason to dead-letter: nothing of the step is written,
 * and the worker takes pending entries over and reads again in stream order.
 */
export class OrderGapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OrderGapError';
  }
}

/** A handler's verdict that an input is bad data, not a fault: dead-letter it with this reason. */
export class Rejection extends Error {
  readonly reason: DeadLetterReason;
  readonly details: unknown;
  constructor(reason: DeadLetterReason, message: string, details?: unknown) {
    super(message);
    this.reason = reason;
    this.details = details;
  }
}

export type { Fields };
