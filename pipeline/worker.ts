/**
 * Runs one stage as a consumer-group worker: read a batch (taking over stale pending entries
 * of dead consumers), hand it to the stage, commit outputs + acks atomically. Poison entries go
 * to the DLQ after ATLAS_MAX_DELIVERIES; Redis outages are waited out with backoff; output
 * backlog pauses reading; order-sensitive stages get their inputs re-sequenced.
 */

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { backlog } from './backlog.ts';
import { backoffMs, sleep } from './backoff.ts';
import { carried, skipMarker } from './carried.ts';
import { resolveBlobs } from './claim-check.ts';
import { Commit } from './commit.ts';
import type { Config } from './config.ts';
import { GroupConsumer } from './consumer.ts';
import { trimDeadLetters } from './dlq.ts';
import { Entry, type Fields } from './entry.ts';
import { Generation, StateLostError } from './generation.ts';
import { type Beat, pruneBeats, publishBeat, withdrawBeat } from './heartbeat.ts';
import type { Keys } from './keys.ts';
import { Lease } from './lease.ts';
import { entryLog, type Logger } from './log.ts';
import { metrics } from './metrics.ts';
import { isPaused } from './pause.ts';
import { connectFailFast, connectWorker, isTransientRedisError } from './redis.ts';
import { replayedDeadKey } from './replay.ts';
import { Resequencer } from './resequencer.ts';
import { retainFor, trimAcknowledged } from './retention.ts';
import {
  type Fence,
  FencedError,
  OrderGapError,
  Rejection,
  type Stage,
  type Step,
  TransientError,
} from './stage.ts';
import { type EntrySpans, entrySpans, noSpans } from './tracing.ts';
import { ProgressWatch, type Verdict } from './watchdog.ts';

const HOUSEKEEPING_MS = 1000;
/** How often the watchdog samples progress and the heartbeat is renewed. */
const BEAT_MS = 1000;
/** About once a minute, an instance forgets the heartbeats of instances killed without a stop. */
const PRUNE_EVERY_BEATS = 60;

interface Item {
  entry: Entry;
  dead?: { reason: string; error: unknown };
}

export class Worker {
  readonly consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly stage: Stage;
  private readonly redis: Redis;
  private readonly keys: Keys;
  private readonly config: Config;
  private readonly log: Logger;
  private readonly inputKey: string;
  private readonly group: string;
  private readonly lease: Lease | undefined;
  /** This worker's consumer on its input stream. */
  private readonly input: GroupConsumer;
  private reseq: Resequencer<Item> | undefined;
  private stopping = false;
  private active = false;
  private paused = false;
  /** Paused by an operator (`atlas pause`): reads nothing, stays active and ready to resume. */
  private held = false;
  /**
   * Called by the active instance between batches, a safe point where nothing is in flight:
   * the control plane runs the stage's jobs there.
   */
  betweenBatches: (() => Promise<void>) | undefined;
  private inJob = false;
  /** Some of our own pending entries are not in memory: read our PEL again. */
  private spilled = false;
  /** Where the current pass over our own PEL stands ('-' = no pass under way). */
  private ownFrom = '-';
  private spilledInPass = false;
  /** Something happened since the last pass began that may let a new pass get further. */
  private moved = true;
  private takeOverAll = false;
  private lastHousekeeping = 0;
  private lastClaim = 0;
  private lastTick = 0;
  private failures = 0;
  private done: Promise<void> | undefined;
  private generation: Generation | undefined;
  /** The gap a step found in its inputs' order, until a step commits again (see holdForGap). */
  private gap: string | null = null;
  /** Why this worker stopped processing: the pipeline's state in Redis is gone. */
  private lost: string | null = null;
  private readonly watch: ProgressWatch;
  private stalled = false;
  /** The watchdog gave up on this term: a singleton steps down so a standby takes over. */
  private stepDown = false;
  /** The connection dropped: replies to commands in flight may be lost, so our PEL is the truth. */
  private reconnected = false;
  /** A fail-fast connection for the watchdog and heartbeat, never queued behind a blocking read. */
  private readonly side: Redis;
  private beatTimer: NodeJS.Timeout | undefined;
  /**
   * The blocking reads of new entries, on a connection of their own so that the next batch is
   * read while this one is handled and committed on the main one.
   */
  private readonly reader: Redis;
  /** The read of the next batch, in flight or done, while the current one is processed. */
  private ahead: Promise<Entry[]> | undefined;
  /** Handling ranges sent and not yet confirmed (see markHandling). */
  private marks: Promise<void>[] = [];
  /** The tracing spans of the batch in hand (outputs carry their traceparent). */
  private spans: EntrySpans = noSpans;

  constructor(stage: Stage, redis: Redis, keys: Keys, config: Config, log: Logger) {
    this.stage = stage;
    this.redis = redis;
    this.keys = keys;
    this.config = config;
    this.log = log.child({ stage: stage.name, consumer: this.consumer });
    this.inputKey = keys.stream(stage.input);
    this.group = stage.group ?? stage.name;
    this.input = new GroupConsumer({
      redis,
      stream: this.inputKey,
      group: this.group,
      name: this.consumer,
      batchSize: config.ATLAS_BATCH_SIZE,
      handlingKey: keys.of('handling', this.group),
    });
    if (stage.singleton)
      this.lease = new Lease(redis, keys.of('lease', stage.name), config.ATLAS_LEASE_MS, this.consumer);
    this.watch = new ProgressWatch(config.ATLAS_STALL_MS);
    // Not the door's 800 ms: a slow machine must not pass for an unreachable Redis.
    this.side = connectFailFast(config, `atlas-watch-${stage.name}`, this.log, BEAT_MS * 3);
    this.reader = connectWorker(config, `atlas-read-${stage.name}`, this.log);
    for (const connection of [redis, this.reader])
      connection.on('reconnecting', () => {
        this.reconnected = true;
      });
  }

  start(): Promise<void> {
    this.done ??= this.run();
    return this.done;
  }

  /** Stops reading; the batch in flight is finished and committed first. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
  }

  get isActive(): boolean {
    return this.active;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** The lease this instance holds while active (singletons only). */
  get fence(): Fence | undefined {
    return this.lease?.token ? { key: this.lease.key, token: this.lease.token } : undefined;
  }

  private beatFailed = false;
  private beats = 0;

  /** Why this instance is not ready, or null. */
  notReady(): string | null {
    if (this.lost) return `state lost: ${this.lost}`;
    if (this.beatFailed) return 'Redis unreachable';
    if (this.gap) return `order gap, waiting for the missing entries: ${this.gap}`;
    if (this.stalled)
      return `stalled: no progress for over ${this.config.ATLAS_STALL_MS} ms with work waiting`;
    if (this.held) return `paused by an operator (atlas resume ${this.stage.name})`;
    return this.stage.notReady?.() ?? (this.paused ? 'output over high-water mark' : null);
  }

  private async run(): Promise<void> {
    try {
      await this.retrying(async () => {
        this.generation = await Generation.join(this.redis, this.keys);
        await this.input.ensureGroup();
      });
      void this.beat(); // visible at once, not a beat later
      this.beatTimer = setInterval(() => void this.beat(), BEAT_MS);
      while (!this.stopping) {
        if (this.lost) {
          await this.awaitRecovery();
          continue;
        }
        try {
          if (!(await this.activate())) break;
        } catch (err) {
          const lost = lostReason(err);
          if (!lost) throw err;
          this.enterLost(lost);
          continue;
        }
        await this.loop();
        await this.deactivate();
        if (this.stepDown) await this.giveWay();
      }
    } finally {
      clearInterval(this.beatTimer);
      // Even when stopping interrupts a retry: a standby takes over now, not after the lease lapses.
      await this.lease?.release();
      if (this.lease) metrics.leaseHolder.remove({ stage: this.stage.name, consumer: this.consumer });
      for (const part of this.parts())
        await withdrawBeat(this.side, this.keys, part, this.consumer).catch(() => {});
      this.side.disconnect();
      this.reader.disconnect();
      await this.stage.stop?.();
      this.log.info('stopped');
    }
  }

  /** Stops processing, loudly, until `atlas recover` gives the pipeline a new generation. */
  private enterLost(why: string): void {
    if (this.lost) return;
    this.lost = why;
    this.active = false;
    this.showLease(false);
    metrics.stateLost.set({ stage: this.stage.name }, 1);
    this.log.error(
      { reason: why },
      'pipeline state lost in Redis: stopped processing (nothing more is written); run `atlas recover`',
    );
  }

  private async awaitRecovery(): Promise<void> {
    await this.lease?.resign();
    while (!this.stopping) {
      await sleep(BEAT_MS);
      const why = await this.generation!.check().catch(() => this.lost);
      if (why !== null) continue;
      await this.retrying(() => this.input.ensureGroup());
      this.lost = null;
      metrics.stateLost.set({ stage: this.stage.name }, 0);
      this.log.info({ generation: this.generation!.id }, 'pipeline recovered; processing again');
      return;
    }
  }

  /** A singleton that the watchdog gave up on lets a standby take over (or takes over itself afresh). */
  private async giveWay(): Promise<void> {
    this.stepDown = false;
    await this.lease?.resign();
    await sleep(this.config.ATLAS_LEASE_MS / 2);
  }

  /** Watchdog and heartbeat, once a second, on the side connection. */
  private async beat(): Promise<void> {
    try {
      const now = Date.now();
      if (this.active && !this.lost) {
        const work = await this.input.waitingWork(this.side);
        this.onVerdict(
          this.watch.assess({
            now,
            work,
            excused: this.paused || this.held || this.inJob || this.stage.notReady?.() != null,
          }),
        );
      } else this.watch.progressed(now);
      const beat: Omit<Beat, 'stage'> = {
        consumer: this.consumer,
        pid: process.pid,
        singleton: this.stage.singleton === true,
        role: this.lost ? 'lost' : this.active ? 'active' : 'standby',
        progress_at: this.watch.lastProgressAt,
        stalled: this.stalled,
        problem: this.lost
          ? `state lost: ${this.lost}`
          : this.held
            ? 'paused by an operator'
            : (this.stage.notReady?.() ?? null),
        at: now,
      };
      await Promise.all(
        this.parts().map((stage) => publishBeat(this.side, this.keys, { ...beat, stage }, BEAT_MS * 3)),
      );
      if (++this.beats % PRUNE_EVERY_BEATS === 0) await pruneBeats(this.side, this.keys);
      this.beatFailed = false;
    } catch (err) {
      if (!this.beatFailed) this.log.warn({ err: describe(err) }, 'heartbeat failed; retrying every second');
      this.beatFailed = true;
    }
  }

  /** The stages this instance stands for in heartbeats (a chain: each of its stages). */
  private parts(): string[] {
    return this.stage.parts ?? [this.stage.name];
  }

  private onVerdict(verdict: Verdict): void {
    const wasStalled = this.stalled;
    this.stalled = verdict !== 'ok';
    metrics.stalled.set({ stage: this.stage.name }, this.stalled ? 1 : 0);
    if (verdict === 'ok') {
      if (wasStalled) this.log.info('progressing again');
      return;
    }
    if (!wasStalled) {
      metrics.stalls.inc({ stage: this.stage.name });
      this.log.error(
        { stall_ms: this.config.ATLAS_STALL_MS },
        'stalled: work is waiting and nothing was committed; re-reading own pending entries',
      );
      this.rereadOwn();
      this.lastClaim = 0;
    }
    if (verdict === 'escalate' && this.stage.singleton && !this.stepDown) {
      this.log.error('still stalled: stepping down so another instance takes over');
      this.stepDown = true;
    }
  }

  /** Becomes the active instance: lease (singletons), restored order, taken-over entries. */
  private async activate(): Promise<boolean> {
    if (this.lease) {
      this.log.info('waiting for the lease (hot standby)');
      this.showLease(false);
      if (!(await this.lease.acquire(() => this.stopping))) return false;
      this.lease.onLost = () => {
        this.log.warn('lease lost; stepping down');
        this.active = false;
        this.showLease(false);
      };
      this.log.info({ token: this.lease.token }, 'active');
    }
    await this.retrying(async () => {
      // Lost meanwhile (paused past it, or the stage found another instance active): do not
      // retry for a lease that is gone; the check below sends us back to standby.
      if (this.lease && this.lease.token === undefined) return;
      if (this.stage.order) this.reseq = await this.restoreOrder();
      await this.stage.activate?.({ generation: this.generation! }).then((next) => this.moveOrder(next));
    });
    // The lease may have lapsed while the stage was getting ready: then go back to standby.
    this.active = !this.lease || this.lease.token !== undefined;
    this.showLease(this.active);
    // The previous holder is gone (we hold its lease): its pending entries are ours at once.
    this.takeOverAll = this.stage.singleton === true;
    this.lastClaim = 0;
    this.rereadOwn();
    return true;
  }

  private async deactivate(): Promise<void> {
    await this.finishAhead();
    this.active = false;
    this.showLease(false);
    this.reseq = undefined;
    this.gap = null; // a standby waits for no entries; whoever is active holds the gap now
    // Redis may be gone or lost: activation loads the stage's state again anyway.
    await this.resetStage().catch((err: unknown) => this.log.warn({ err: describe(err) }, 'reset failed'));
  }

  /** atlas_lease_holder of a singleton: 1 while this instance holds the lease, 0 as a standby. */
  private showLease(held: boolean): void {
    if (this.lease)
      metrics.leaseHolder.set({ stage: this.stage.name, consumer: this.consumer }, held ? 1 : 0);
  }

  private orderKey(): string {
    return orderKey(this.keys, this.group);
  }

  private async restoreOrder(): Promise<Resequencer<Item>> {
    const reseq = new Resequencer<Item>(this.config.ATLAS_RESEQUENCE_BUFFER);
    const saved = await this.redis.hgetall(this.orderKey());
    for (const [key, next] of Object.entries(saved)) reseq.setNext(key, BigInt(next));
    return reseq;
  }

  private moveOrder(next: Map<string, bigint> | undefined): void {
    if (next && this.reseq) for (const [key, n] of next) this.reseq.setNext(key, n);
  }

  private async loop(): Promise<void> {
    while (!this.stopping && this.active && !this.lost && !this.stepDown) {
      try {
        if (this.reconnected) {
          // Replies to what was in flight may be lost (entries delivered to us but never seen).
          this.reconnected = false;
          this.log.warn('Redis connection was re-established; re-reading own pending entries');
          this.rereadOwn();
          this.lastHousekeeping = 0;
        }
        await this.housekeeping();
        await this.runTick();
        const entries = await this.nextEntries();
        if (entries.length > 0) {
          this.readAhead();
          await this.process(entries);
        }
        if (this.active) await this.runControl();
        this.failures = 0;
      } catch (err) {
        await this.onLoopError(err);
      }
    }
  }

  /** A control job may take longer than the stall bound: the watchdog waits for it. */
  private async runControl(): Promise<void> {
    this.inJob = true;
    try {
      await this.betweenBatches?.();
    } finally {
      this.inJob = false;
    }
  }

  private async onLoopError(err: unknown): Promise<void> {
    const lost = lostReason(err);
    if (lost) {
      // A vanished group is most often the whole state gone: the generation says which.
      this.enterLost((await this.generation?.check().catch(() => null)) ?? lost);
      return;
    }
    if (err instanceof OrderGapError) return this.holdForGap(err);
    if (isFenced(err)) {
      metrics.fenced.inc({ stage: this.stage.name });
      this.log.warn({ err: describe(err) }, 'fenced off (another instance is active); stepping down');
      this.active = false;
      // Stop renewing: a sink may have fenced us while our lease still stands, and a lease kept
      // alive by a fenced instance would keep every instance waiting.
      await this.lease?.resign();
      return;
    }
    const transient = isTransient(err);
    if (transient) this.countFault(err);
    this.log[transient ? 'warn' : 'error'](
      { err },
      transient ? 'Redis unavailable; retrying' : 'step failed; retrying',
    );
    // The batch in flight is still pending under our name: resetStage reads it again.
    await this.resetStage();
    if (this.stage.order) this.reseq = await this.restoreOrder().catch(() => this.reseq);
    await sleep(backoffMs(this.failures++));
  }

  /**
   * Inputs handed over out of stream order (a chain's inner stage found a gap): nothing of the
   * step was written. The missing entries are pending somewhere — under a dead or fenced
   * instance, or ours and not read again yet — so take others' over first and read our own
   * again, both in stream order, as the re-sequencer waits for a gap to fill. Loud meanwhile
   * (error log, metric, /ready); a gap that never fills is a stall, and a singleton steps down.
   */
  private async holdForGap(err: OrderGapError): Promise<void> {
    metrics.orderGaps.inc({ stage: this.stage.name });
    this.gap = err.message;
    this.log.error(
      { err: err.message },
      'order gap: step not written; taking over pending entries and reading again in stream order',
    );
    await this.finishAhead();
    await this.resetStage();
    this.takeOverAll = this.stage.singleton === true;
    this.lastClaim = 0;
    await sleep(backoffMs(this.failures++));
  }

  private countFault(err: unknown): void {
    metrics.transientErrors.inc({ stage: this.stage.name, kind: faultKind(err) });
  }

  private async retrying(fn: () => Promise<void>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (this.stopping || lostReason(err)) throw err;
        if (isTransient(err)) this.countFault(err);
        this.log.warn({ err }, 'retrying');
        await sleep(backoffMs(attempt));
      }
    }
  }

  /**
   * Drops the stage's uncommitted in-memory state. Entries it held from earlier batches (a
   * conflation window, the re-sequencer) are still pending under our name: read them again.
   */
  private async resetStage(): Promise<void> {
    await this.stage.reset?.();
    this.rereadOwn();
  }

  /** Our whole PEL is to be read again (after a failed step, or on becoming active). */
  private rereadOwn(): void {
    this.spilled = true;
    this.ownFrom = '-';
    this.moved = true;
  }

  /**
   * Starts reading the next batch while this one is handled and committed — when the next read
   * will be one of new entries; our own pending entries and takeovers are read in their turn.
   */
  private readAhead(): void {
    if (this.ahead || this.paused || this.held || this.spilled || this.stopping) return;
    this.ahead = this.input.readNew(this.blockMs(), this.reader).catch((err: unknown) => {
      // The read may have delivered entries whose reply we lost: our PEL is the truth.
      this.log.warn({ err: describe(err) }, 'read ahead failed; re-reading own pending entries');
      this.rereadOwn();
      return [];
    });
  }

  /**
   * The batch read ahead, once this worker stops being active or reads its own PEL: handled if
   * the worker is stopping gracefully, otherwise dropped — the entries are pending under our name,
   * and the read has completed, so a pass over our PEL (or a successor's takeover) finds them.
   */
  private async finishAhead(): Promise<void> {
    const ahead = this.ahead;
    if (!ahead) return;
    this.ahead = undefined;
    const entries = await ahead;
    if (entries.length === 0) return;
    if (this.stopping && this.active && !this.lost && !this.stepDown) {
      await this.process(entries).catch((err: unknown) =>
        this.log.warn({ err: describe(err) }, 'last batch read ahead not committed; it stays pending'),
      );
    } else this.rereadOwn();
  }

  /** How long a read of new entries may block: a stage with a tick must not sleep through it. */
  private blockMs(): number {
    const tick = this.stage.tick;
    return tick
      ? Math.max(1, Math.min(this.config.ATLAS_BLOCK_MS, this.lastTick + tick.everyMs - Date.now()))
      : this.config.ATLAS_BLOCK_MS;
  }

  /**
   * Stale entries of dead consumers first, then our own pending entries that are not in memory
   * (page by page, one pass over our PEL), then new ones.
   */
  private async nextEntries(): Promise<Entry[]> {
    if (this.held) {
      await sleep(Math.min(200, this.config.ATLAS_BLOCK_MS));
      return [];
    }
    const now = Date.now();
    if (now - this.lastClaim >= this.config.ATLAS_CLAIM_IDLE_MS / 2) {
      // Thawed past its lease, a former holder must not take entries from its successor: they
      // would leave the successor's pass over its own pending entries with a gap.
      if (this.lease && !(await this.lease.stillHeld()))
        throw new FencedError('lease lost before a takeover');
      const claimed = await this.input.claimStale(this.takeOverAll ? 0 : this.config.ATLAS_CLAIM_IDLE_MS);
      if (claimed.length > 0)
        this.log.info({ count: claimed.length }, 'took over pending entries of other consumers');
      if (claimed.length > 0) return claimed;
      this.takeOverAll = false;
      this.lastClaim = now;
    }
    // A pass runs to its end even with a full re-sequencer: the entry it waits for may be among
    // the spilled ones, and that one is always accepted. A new pass only starts once the order
    // has moved (or a step failed): before that it would spill the same entries again.
    if (this.spilled && (this.ownFrom !== '-' || this.moved)) {
      // What was read ahead is in our PEL once its read is done: the pass reads it from there.
      await this.finishAhead();
      if (this.ownFrom === '-') {
        this.moved = false;
        this.spilledInPass = false;
      }
      const own = await this.input.readOwn(this.ownFrom);
      if (own.length > 0) {
        this.ownFrom = `(${own[own.length - 1]!.id}`;
        return own;
      }
      this.ownFrom = '-';
      this.spilled = this.spilledInPass;
      if (this.spilled && this.moved) return []; // another pass can get further: no blocking read
    }
    if (this.paused) {
      await sleep(Math.min(200, this.config.ATLAS_BLOCK_MS));
      return [];
    }
    // A full re-sequencer keeps reading too: the entry it waits for may be next in the stream;
    // whatever does not fit spills (stays pending under our name, for a later pass).
    const ahead = this.ahead;
    this.ahead = undefined;
    const fresh = await (ahead ?? this.input.readNew(this.blockMs(), this.reader));
    if (fresh.length > 0 && this.stage.singleton && (await this.input.othersHoldPending())) {
      // A former holder, thawed after the takeover, read entries before it found itself fenced:
      // older than these, and not published. Take them over and handle everything in stream
      // order (what was just read stays pending under our name, for the pass over our PEL).
      this.log.warn('entries pending under another consumer: taking them over first, in stream order');
      this.takeOverAll = true;
      this.lastClaim = 0;
      this.rereadOwn();
      return [];
    }
    return fresh;
  }

  private async process(entries: Entry[]): Promise<void> {
    const started = performance.now();
    metrics.entriesIn.inc({ stage: this.stage.name }, entries.length);
    const items = await this.persist(() => this.screen(entries));
    // Acks of stale entries and bad-sequence dead letters stand even if the handler fails.
    const pre = this.newCommit();
    const ordered = this.order(items, pre);
    this.spans = entrySpans(
      this.stage.name,
      this.inputKey,
      ordered.items.map((i) => i.entry),
    );
    try {
      await this.handleBatch(pre, ordered);
    } finally {
      this.spans.end();
      this.spans = noSpans;
    }
    metrics.batchSeconds.observe({ stage: this.stage.name }, (performance.now() - started) / 1000);
  }

  private async handleBatch(pre: Commit, ordered: { items: Item[]; advance: Map<string, bigint> }) {
    const failed = await this.persist(async () => {
      const main = this.newCommit();
      try {
        await this.handleAll(ordered.items, main);
        this.checkpointOrder(main, ordered.advance);
        await this.commit(Commit.merge(pre, main));
        this.consume(ordered.advance);
        return false;
      } catch (err) {
        if (endsTheStep(err)) throw err;
        this.log.warn({ err }, 'batch failed; handling its entries one at a time');
        await this.resetStage();
        return true;
      }
    });
    // Outside the batch's retry: a transient fault in there must not handle (and write) again
    // the entries committed one at a time already.
    if (failed) {
      await this.persist(() => this.commit(pre));
      await this.isolate(ordered.items);
    }
  }

  /**
   * Retries a step through transient faults with the same entries in memory: reading them
   * again would count as another delivery, and an outage must never make an entry poison.
   */
  private async persist<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        // A lost lease or lost state ends the retry: the step must not be written by us any more.
        if (!isTransient(err) || this.stopping || !this.active || this.lost) throw err;
        this.countFault(err);
        this.log.warn({ err: describe(err), attempt }, 'transient fault; retrying the step');
        await sleep(backoffMs(attempt));
        await this.resetStage().catch(() => {});
      }
    }
  }

  /**
   * Which of `ids` a replay re-reads and this stage dead-lettered already. Asked at each commit
   * that dead-letters (never once a second: a replay's set must be seen by the very next step of
   * every instance), so a step without dead letters pays no round trip for it. Order-sensitive
   * stages are never replayed (they are rebuilt).
   */
  private async replayedDead(ids: string[]): Promise<Set<string>> {
    if (this.stage.order || ids.length === 0) return new Set();
    const member = await this.redis.smismember(replayedDeadKey(this.keys, this.stage.name), ...ids);
    return new Set(ids.filter((_, i) => member[i] === 1));
  }

  /** Before a control job: no read in flight; what it delivered is re-read from our PEL afterwards. */
  async quiesce(): Promise<void> {
    await this.finishAhead();
  }

  /** Applies a control job's writes as one step of this stage (fenced, generation-checked). */
  async commitJob(fill: (step: Step) => void | Promise<void>): Promise<void> {
    const commit = this.newCommit();
    await fill(this.stepFor(commit));
    await this.commit(commit);
  }

  /** Poison and unreadable blobs are found before the stage sees anything. */
  private async screen(entries: Entry[]): Promise<Item[]> {
    const blobFailures = await resolveBlobs(this.redis, this.keys, entries);
    return entries.map((entry): Item => {
      if (entry.deliveries > this.config.ATLAS_MAX_DELIVERIES) {
        return { entry, dead: { reason: 'max_deliveries', error: `delivered ${entry.deliveries} times` } };
      }
      const blobError = blobFailures.get(entry);
      return blobError ? { entry, dead: { reason: blobError.reason, error: blobError } } : { entry };
    });
  }

  /** Unordered stages take the batch as it is; ordered ones what the re-sequencer lets through. */
  private order(items: Item[], commit: Commit): { items: Item[]; advance: Map<string, bigint> } {
    const reseq = this.reseq;
    const spec = this.stage.order;
    if (!reseq || !spec) return { items, advance: new Map() };
    for (const item of items) {
      const key = spec.key ? item.entry.optionalText(spec.key) : '';
      const raw = item.entry.optionalText(spec.seq);
      if (key === undefined || raw === undefined || !/^\d+$/.test(raw)) {
        this.deadLetterInto(
          commit,
          item.entry,
          'bad_sequence',
          `no valid ${spec.seq}${spec.key ? `/${spec.key}` : ''}`,
        );
        continue;
      }
      const verdict = reseq.offer(key, BigInt(raw), item);
      if (
        verdict === 'stale' ||
        (verdict === 'duplicate' && reseq.peek(key, BigInt(raw))?.entry.id !== item.entry.id)
      ) {
        metrics.duplicates.inc({ stage: this.stage.name });
        commit.ack(item.entry.id);
      } else if (verdict === 'spill') {
        this.spilled = true;
        this.spilledInPass = true;
      }
    }
    return reseq.ready();
  }

  /** After a commit: the order moves on (and spilled entries may fit now). */
  private consume(advance: Map<string, bigint>): void {
    this.reseq?.consume(advance);
    if (advance.size > 0) this.moved = true;
  }

  private checkpointOrder(commit: Commit, advance: Map<string, bigint>): void {
    for (const [key, next] of advance) commit.write('HSET', this.orderKey(), key, next.toString());
  }

  private async handleAll(items: Item[], commit: Commit): Promise<void> {
    if (this.stage.skipped) return this.handleInPlace(items, commit, this.stage.skipped.bind(this.stage));
    const live: Entry[] = [];
    for (const item of items) {
      if (item.dead) this.deadLetterInto(commit, item.entry, item.dead.reason, item.dead.error);
      else live.push(item.entry);
    }
    await this.handleLive(live, commit);
  }

  /**
   * A chain's dead inputs keep their place: the live entries before one are handled first, then
   * its skip marker passes through the chain, so an ordered stage inside sees no gap.
   */
  private async handleInPlace(
    items: Item[],
    commit: Commit,
    skipped: NonNullable<Stage['skipped']>,
  ): Promise<void> {
    if (this.stage.singleton) this.markHandling(items.filter((i) => !i.dead).map((i) => i.entry));
    let run: Entry[] = [];
    for (const item of items) {
      if (!item.dead) {
        run.push(item.entry);
        continue;
      }
      if (run.length > 0) await this.stage.handle(run, this.stepFor(commit));
      run = [];
      this.deadLetterInto(commit, item.entry, item.dead.reason, item.dead.error);
      await skipped(item.entry, item.dead.reason, this.stepFor(commit));
    }
    if (run.length > 0) await this.stage.handle(run, this.stepFor(commit));
  }

  private async handleLive(live: Entry[], commit: Commit): Promise<void> {
    if (live.length === 0) return;
    if (this.stage.singleton) this.markHandling(live);
    await this.stage.handle(live, this.stepFor(commit));
  }

  /**
   * Records the range being handled (for a successor's delivery counts) without waiting for it:
   * the SET goes out on the worker's connection ahead of the handler's work, so Redis has it before
   * anything the handler could die of, and its reply comes back with the commit's (which awaits
   * it) instead of costing a round trip of its own.
   */
  private markHandling(live: Entry[]): void {
    if (live.length === 0) return;
    const marked = this.input.markHandling(live);
    marked.catch(() => {}); // awaited (and its failure raised) by the commit
    this.marks.push(marked);
  }

  /** A failed batch: each entry alone, retried until it succeeds or reaches the delivery limit. */
  private async isolate(items: Item[]): Promise<void> {
    for (const item of items) {
      const advance = this.advanceFor(item.entry);
      for (let attempt = item.entry.deliveries; ; attempt++) {
        try {
          await this.persist(async () => {
            const commit = this.newCommit();
            await this.handleAll(
              [attempt > this.config.ATLAS_MAX_DELIVERIES ? this.asPoison(item, attempt) : item],
              commit,
            );
            this.checkpointOrder(commit, advance);
            await this.commit(commit);
          });
          this.consume(advance);
          break;
        } catch (err) {
          if (endsTheStep(err)) throw err;
          await this.resetStage();
          this.log.warn({ err, ...entryLog(item.entry), attempt }, 'entry failed');
          if (attempt >= this.config.ATLAS_MAX_DELIVERIES) {
            item.dead = { reason: 'handler_error', error: err };
            item.entry.deliveries = attempt; // the DLQ's attempt count
          } else await sleep(backoffMs(attempt, 20, 1000));
        }
      }
    }
  }

  private advanceFor(entry: Entry): Map<string, bigint> {
    const spec = this.stage.order;
    if (!spec) return new Map();
    const key = spec.key ? entry.text(spec.key) : '';
    return new Map([[key, BigInt(entry.text(spec.seq)) + 1n]]);
  }

  private asPoison(item: Item, attempt: number): Item {
    return item.dead
      ? item
      : { entry: item.entry, dead: { reason: 'handler_error', error: `failed ${attempt} times` } };
  }

  private newCommit(): Commit {
    return new Commit(this.keys, this.config.ATLAS_CLAIM_CHECK_BYTES);
  }

  private async commit(commit: Commit): Promise<void> {
    const dead = commit.deadLetterIds;
    if (dead.length > 0)
      commit.settleDeadLetters(await this.replayedDead(dead), replayedDeadKey(this.keys, this.stage.name));
    const marks = this.marks.splice(0);
    if (commit.empty) {
      await Promise.all(marks);
      return;
    }
    const lease = this.fence;
    if (this.lease && !lease) throw new FencedError('lease lost before commit');
    const generation = { key: this.generation!.key, token: this.generation!.id };
    // Sent behind the handling range on the same connection: Redis applies them in that order.
    const [written] = await Promise.all([
      commit.run(this.redis, { stream: this.inputKey, group: this.group }, { lease, generation }),
      ...marks,
    ]);
    this.watch.progressed();
    this.gap = null;
    if (written === null) {
      this.log.info(
        'step already committed (retry after a lost reply, or a takeover); nothing written again',
      );
      metrics.duplicates.inc({ stage: this.stage.name });
      return;
    }
    metrics.entriesOut.inc({ stage: this.stage.name }, commit.outputs);
    metrics.claimCheckBytes.inc({ stage: this.stage.name }, commit.blobBytes);
  }

  private stepFor(commit: Commit): Step {
    const output = this.stage.output;
    const send = (fields: Fields, stream?: string) => {
      const name = stream ?? output;
      if (!name) throw new Error(`stage ${this.stage.name} has no output stream`);
      commit.append(this.keys.stream(name), this.spans.carry(fields));
    };
    return {
      send,
      sendFor: (input, fields, stream) => send(carried(input, fields), stream),
      ack: (entry) => commit.ack(entry.id),
      deadLetter: (entry, reason, error) => this.deadLetterInto(commit, entry, reason, error),
      write: (op, key, ...args) => commit.write(op, key, ...args),
    };
  }

  private deadLetterInto(commit: Commit, entry: Entry, reason: string, error: unknown): void {
    commit.deadLetter({
      id: entry.id,
      dlq: this.keys.dlq,
      fields: deadLetterFields(this.stage.name, this.inputKey, entry, reason, error),
      counts: this.keys.dlqCounts,
      countField: `${this.stage.name}|${reason}`,
    });
    const marker = skipMarker(this.stage, entry, reason);
    if (marker) commit.append(this.keys.stream(this.stage.output!), this.spans.carry(marker));
    commit.ack(entry.id);
    metrics.deadLettered.inc({ stage: this.stage.name, reason });
    this.spans.deadLettered(entry, reason, error);
    this.log.warn({ ...entryLog(entry), reason, error: describe(error) }, 'dead-lettered');
  }

  private async runTick(): Promise<void> {
    const tick = this.stage.tick;
    if (!tick || Date.now() - this.lastTick < tick.everyMs) return;
    this.lastTick = Date.now();
    const commit = this.newCommit();
    await tick.run(this.stepFor(commit));
    await this.commit(commit);
  }

  /** An operator's pause (atlas pause / resume). */
  private async readControlKeys(): Promise<void> {
    const held = await isPaused(this.redis, this.keys, this.stage.name);
    if (held !== this.held) this.log.warn(held ? 'paused by an operator' : 'resumed by an operator');
    this.held = held;
    metrics.stagePaused.set({ stage: this.stage.name }, held ? 1 : 0);
  }

  /** Backpressure: reading pauses while any stream the stage writes is over the high-water mark. */
  private async checkBacklog(): Promise<void> {
    const outputs = [this.stage.output, ...(this.stage.outputs ?? [])].filter((s) => s !== undefined);
    if (outputs.length === 0) return;
    let behind = 0;
    let worst = '';
    for (const output of outputs) {
      const n = await backlog(this.redis, this.keys.stream(output));
      if (n > behind) [behind, worst] = [n, output];
    }
    const paused = behind > this.config.ATLAS_HIGH_WATER;
    if (paused !== this.paused)
      this.log.info(
        { backlog: behind, stream: worst },
        paused ? 'output over high-water mark; pausing' : 'resuming',
      );
    this.paused = paused;
    metrics.paused.set({ stage: this.stage.name }, paused ? 1 : 0);
  }

  /** Backpressure, retention and gauges, about once a second. */
  private async housekeeping(): Promise<void> {
    if (Date.now() - this.lastHousekeeping < HOUSEKEEPING_MS) return;
    this.lastHousekeeping = Date.now();
    const lost = await this.generation!.check();
    if (lost) throw new StateLostError(lost);
    await this.checkBacklog();
    await this.readControlKeys();
    await trimAcknowledged(
      this.redis,
      this.keys,
      this.inputKey,
      retainFor(this.config, this.stage.input),
      (await this.stage.inputFloor?.()) ?? undefined,
    );
    await trimDeadLetters(this.redis, this.keys, this.config, this.log);
  }
}

/** Where an order-sensitive stage stands: per order key, the next `seq` it will apply. */
export function orderKey(keys: Keys, stage: string): string {
  return keys.of('order', stage);
}

/** Faults that say "try again later", not "this entry is bad". */
function isTransient(err: unknown): boolean {
  return err instanceof TransientError || isTransientRedisError(err);
}

/** A stage's TransientError is its sink failing; anything else transient is Redis. */
function faultKind(err: unknown): 'sink' | 'redis' {
  return err instanceof TransientError ? 'sink' : 'redis';
}

/** Faults that are about the worker, not the batch: never a reason to handle entries one by one. */
function endsTheStep(err: unknown): boolean {
  return isTransient(err) || isFenced(err) || err instanceof OrderGapError || lostReason(err) !== null;
}

function isFenced(err: unknown): boolean {
  return err instanceof FencedError;
}

/** The pipeline's state is gone: the generation check failed, or a stream or group we own vanished. */
function lostReason(err: unknown): string | null {
  if (err instanceof StateLostError) return err.message;
  if (err instanceof Error && err.message.startsWith('NOGROUP'))
    return `a consumer group of the pipeline is gone (${err.message})`;
  return null;
}

export function describe(error: unknown): string {
  if (error instanceof Rejection) return error.message;
  if (error instanceof Error) return error.message;
  return typeof error === 'string' ? error : JSON.stringify(error);
}

/** DLQ entry: where it failed and why, with the original fields under `orig.` (blob refs kept as refs). */
export function deadLetterFields(
  stage: string,
  stream: string,
  entry: Entry,
  reason: string,
  error: unknown,
): Fields {
  const fields: Fields = {
    stage,
    reason,
    error: describe(error),
    attempts: String(entry.deliveries),
    stream,
    entry_id: entry.id,
    failed_at: new Date().toISOString(),
  };
  if (error instanceof Rejection && error.details !== undefined)
    fields.details = JSON.stringify(error.details);
  for (const [name, value] of entry.fields) {
    if (!entry.fields.has(`${name}@blob`)) fields[`orig.${name}`] = value;
  }
  return fields;
}

export { Entry };
