/**
 * One consumer of one group on one stream: the Redis side of reading — new entries, our own
 * pending entries again (without counting a delivery), and entries other consumers left pending
 * (taken over with honest delivery counts). The worker decides when to do which.
 */
import type { Redis } from 'ioredis';
import { groupsOf } from './backlog.ts';
import { type Entry, parseEntries } from './entry.ts';
import { compareStreamIds } from './retention.ts';
import { runScript } from './scripts.ts';

/** [id, consumer, idle ms, deliveries], as XPENDING's extended form gives them. */
type PendingRow = [string, string, number, number];

const FORGET_IDLE_CONSUMER_MS = 10 * 60 * 1000;

export class GroupConsumer {
  private readonly redis: Redis;
  private readonly stream: string;
  private readonly group: string;
  private readonly name: string;
  private readonly batchSize: number;
  /** Where a singleton records what it is handling, for its successor's delivery counts. */
  private readonly handlingKey: string;

  constructor(opts: {
    redis: Redis;
    stream: string;
    group: string;
    name: string;
    batchSize: number;
    handlingKey: string;
  }) {
    this.redis = opts.redis;
    this.stream = opts.stream;
    this.group = opts.group;
    this.name = opts.name;
    this.batchSize = opts.batchSize;
    this.handlingKey = opts.handlingKey;
  }

  async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.stream, this.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err instanceof Error && err.message.includes('BUSYGROUP'))) throw err;
    }
  }

  /** New entries, waiting up to blockMs for one; on `via` when the main connection must stay free. */
  async readNew(blockMs: number, via: Redis = this.redis): Promise<Entry[]> {
    const reply = (await via.callBuffer(
      'XREADGROUP',
      'GROUP',
      this.group,
      this.name,
      'COUNT',
      this.batchSize,
      'BLOCK',
      blockMs,
      'STREAMS',
      this.stream,
      '>',
    )) as [Buffer, [Buffer, Buffer[]][]][] | null;
    return parseEntries(reply?.[0]?.[1] ?? null);
  }

  /**
   * The next page of our own pending entries after `from` ('-' or an exclusive '(id'). Read with
   * XRANGE, not XREADGROUP: re-reading our own PEL must not count as another delivery, or
   * entries spilled by the re-sequencer (read again on every pass) would end up as poison.
   */
  async readOwn(from: string): Promise<Entry[]> {
    for (let start = from; ; ) {
      const rows = (await this.redis.xpending(
        this.stream,
        this.group,
        start,
        '+',
        this.batchSize,
        this.name,
      )) as PendingRow[];
      if (rows.length === 0) return [];
      const pipeline = this.redis.pipeline();
      for (const [id] of rows) pipeline.xrangeBuffer(this.stream, id, id);
      const replies = (await pipeline.exec()) ?? [];
      const entries: Entry[] = [];
      const deleted: string[] = [];
      for (const [i, [id, , , count]] of rows.entries()) {
        const [err, raw] = replies[i] ?? [];
        if (err) throw err;
        const [entry] = parseEntries(raw as [Buffer, Buffer[]][]);
        if (!entry) {
          deleted.push(id);
          continue;
        }
        entry.deliveries = Number(count);
        entries.push(entry);
      }
      // Pending entries deleted from the stream have nothing left to process.
      if (deleted.length > 0) await this.redis.xack(this.stream, this.group, ...deleted);
      if (entries.length > 0) return entries;
      start = `(${rows[rows.length - 1]![0]}`;
    }
  }

  /**
   * Takes over entries other consumers left pending longer than minIdleMs (0: a singleton taking
   * over from its dead predecessor). Our own pending entries are not touched: they may be
   * waiting in the re-sequencer on purpose.
   */
  async claimStale(minIdleMs: number): Promise<Entry[]> {
    const stale = (await this.stalePendingOfOthers(minIdleMs)).slice(0, this.batchSize);
    // An entry taken over before may be what killed its consumer: those are retried one at a
    // time, so that a poison entry does not take the rest of its batch to the DLQ with it.
    const retried = stale.findIndex((r) => Number(r[3]) > 1);
    const theirs = retried === 0 ? stale.slice(0, 1) : retried > 0 ? stale.slice(0, retried) : stale;
    if (theirs.length === 0) return [];
    const wasHandled = await this.handledByPredecessor(minIdleMs);
    // Only what the dead consumer was handling counts as another delivery; what merely waited (in
    // the re-sequencer, in a conflation window) keeps its count, or restarts alone would make
    // good entries poison. XCLAIM's RETRYCOUNT applies to a whole call: one call per count.
    const calls = new Map<string, string[]>();
    const deliveries = new Map<string, number>();
    for (const [id, , , count] of theirs) {
      const counts = wasHandled(id);
      const call = counts ? 'next' : String(count);
      calls.set(call, [...(calls.get(call) ?? []), id]);
      deliveries.set(id, Number(count) + (counts ? 1 : 0));
    }
    const reply: [Buffer, Buffer[]][] = [];
    for (const [call, ids] of calls) {
      const retry = call === 'next' ? [] : ['RETRYCOUNT', call];
      const args = [this.stream, this.group, this.name, minIdleMs, ...ids, ...retry];
      reply.push(...((await this.redis.callBuffer('XCLAIM', ...args)) as [Buffer, Buffer[]][]));
    }
    reply.sort((x, y) => compareStreamIds(x[0].toString(), y[0].toString()));
    const entries = parseEntries(reply);
    for (const e of entries) e.deliveries = deliveries.get(e.id) ?? e.deliveries;
    return entries;
  }

  /** Whether any other consumer of the group holds pending entries (XPENDING's summary). */
  async othersHoldPending(): Promise<boolean> {
    const summary = (await this.redis.xpending(this.stream, this.group)) as [number, ...unknown[]];
    const holders = (summary[3] ?? []) as [string, string][];
    return holders.some(([name, count]) => name !== this.name && Number(count) > 0);
  }

  /**
   * Entries this consumer could make progress on: unread by its group plus pending under its own
   * name (what the watchdog compares with commits). Read on `via`, a connection that is not
   * blocked in XREADGROUP.
   */
  async waitingWork(via: Redis): Promise<number> {
    // A missing stream or group is not the watchdog's to report: the worker finds it as lost state.
    const group = (await groupsOf(via, this.stream)).find((g) => g.name === this.group);
    if (!group) return 0;
    const consumers = (await via.xinfo('CONSUMERS', this.stream, this.group)) as unknown[][];
    const me = consumers.find((c) => String(c[c.indexOf('name') + 1]) === this.name);
    const pending = me ? Number(me[me.indexOf('pending') + 1]) : 0;
    return (group.lag ?? 0) + pending;
  }

  /** Which entries a singleton is about to handle: if it dies now, a successor counts only these. */
  async markHandling(entries: Entry[]): Promise<void> {
    let first = entries[0]!.id;
    let last = first;
    for (const e of entries) {
      if (compareStreamIds(e.id, first) < 0) first = e.id;
      if (compareStreamIds(e.id, last) > 0) last = e.id;
    }
    await this.redis.set(this.handlingKey, `${first} ${last}`);
  }

  /**
   * A stateless stage handles what it reads at once, so every takeover counts as a delivery; a
   * singleton's takeover (minIdleMs 0) counts only the range its predecessor marked as handling.
   */
  private async handledByPredecessor(minIdleMs: number): Promise<(id: string) => boolean> {
    if (minIdleMs > 0) return () => true;
    const handling = await this.redis.get(this.handlingKey);
    if (handling === null) return () => false;
    const [from = '', to = ''] = handling.split(' ');
    return (id) => compareStreamIds(id, from) >= 0 && compareStreamIds(id, to) <= 0;
  }

  /**
   * The oldest pending entries idle for minIdleMs, of every consumer but this one, in stream order
   * (a page of at most `batchSize`). Consumers
   * that hold nothing and have been idle long are forgotten: every process start adds one, and
   * XREADGROUP brings a live one back by itself.
   */
  private async stalePendingOfOthers(minIdleMs: number): Promise<PendingRow[]> {
    const consumers = (await this.redis.xinfo('CONSUMERS', this.stream, this.group)) as unknown[][];
    const rows: PendingRow[] = [];
    for (const flat of consumers) {
      const name = String(flat[flat.indexOf('name') + 1]);
      const pending = Number(flat[flat.indexOf('pending') + 1]);
      const idle = Number(flat[flat.indexOf('idle') + 1]);
      if (name === this.name) continue;
      if (pending === 0) {
        if (idle > FORGET_IDLE_CONSUMER_MS)
          await runScript(this.redis, 'forget-consumer', [this.stream], [this.group, name]);
        continue;
      }
      // A full page of each: the oldest `batchSize` over all of them may all be the last one's.
      // Filling the page from the first consumers listed would pass over older entries of
      // another (a zombie's read, a dead instance's batch) and hand a chain a gap in its order.
      rows.push(
        ...((await this.redis.xpending(
          this.stream,
          this.group,
          'IDLE',
          minIdleMs,
          '-',
          '+',
          this.batchSize,
          name,
        )) as PendingRow[]),
      );
    }
    return rows.sort((x, y) => compareStreamIds(x[0], y[0])).slice(0, this.batchSize);
  }
}
