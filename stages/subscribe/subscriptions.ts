/**
 * Subscribers (gRPC Subscribe/StreamEvents and SSE) read the accepted events — the ingest
 * stream — through Redis consumer groups of their own, named `subscriber:<group>`:
 * members of one group share the events, every event is delivered until it is acknowledged
 * (XACK), and what a member left unacknowledged (it disconnected, it died) is delivered again:
 * to the same member name first (its own pending entries), to any other member once it has
 * been idle ATLAS_SUBSCRIBE_REDELIVER_MS (XAUTOCLAIM). Filtered-out events are acknowledged for
 * the group at once, so they hold nothing.
 *
 * Retention never trims what a group has not acknowledged, so a group no member reads from any
 * more is deleted after ATLAS_SUBSCRIBE_GROUP_TTL_S (a warning and a metric say so); the door's
 * backpressure ignores subscriber groups, so a slow subscriber never refuses publishers.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import type { Config } from '../../pipeline/config.ts';
import { type Entry, parseEntries } from '../../pipeline/entry.ts';
import type { Keys } from '../../pipeline/keys.ts';
import type { Logger } from '../../pipeline/log.ts';
import { connectWorker } from '../../pipeline/redis.ts';
import { streams } from '../streams.ts';
import { subscribeMetrics } from './metrics.ts';

const GROUP_PREFIX = 'subscriber:';
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const READ_COUNT = 100;
const TOUCH_MS = 10_000;
const CLAIM_EVERY_MS = 1000;
const FULL_WAIT_MS = 100;

export const isSubscriberGroup = (group: string): boolean => group.startsWith(GROUP_PREFIX);

/** A request the door refuses: a bad name or pattern, or too many subscribers. */
export class SubscribeError extends Error {
  readonly code: 'invalid_argument' | 'too_many_subscribers';
  constructor(code: SubscribeError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

export interface SubscribeRequest {
  group: string;
  /** Empty: a fresh member name for this connection. */
  consumer?: string;
  types?: string[];
  /** `*` one dot-separated segment, `**` any rest; empty: every topic. */
  topic?: string;
}

export interface Delivery {
  /** Stream entry id: what an acknowledgement names. */
  id: string;
  seq: number;
  topic: string;
  redelivered: boolean;
  envelope: {
    event_id: string;
    event_type: string;
    source: string;
    timestamp: number;
    version: number;
    /** The payload as JSON text, exactly as accepted. */
    payload: string;
  };
}

export interface Subscription {
  readonly consumer: string;
  /** Ends the reading; what was delivered and not acknowledged stays pending for the group. */
  stop(): Promise<void>;
  /** Settles when reading ends: resolved after stop(), rejected when reading failed. */
  readonly ended: Promise<void>;
}

export function topicMatcher(pattern: string): (topic: string) => boolean {
  if (!pattern) return () => true;
  const literal = (s: string) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  const source = pattern
    .split('.')
    .map((seg) => (seg === '**' ? '.*' : seg.split('*').map(literal).join('[^.]*')))
    .join('\\.');
  const re = new RegExp(`^${source}$`);
  return (topic) => re.test(topic);
}

export class Subscriptions {
  private readonly stream: string;
  private readonly groupsKey: string;
  private readonly live = new Set<Subscription>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly redis: Redis;
  private readonly keys: Keys;
  private readonly config: Config;
  private readonly log: Logger;

  constructor(redis: Redis, keys: Keys, config: Config, log: Logger) {
    this.redis = redis;
    this.keys = keys;
    this.config = config;
    this.log = log;
    this.stream = keys.stream(streams.ingest);
    this.groupsKey = keys.of('subscriber-groups');
    const every = Math.min(60_000, (config.ATLAS_SUBSCRIBE_GROUP_TTL_S * 1000) / 2);
    this.sweeper = setInterval(() => void this.expireGroups().catch(() => {}), every);
    this.sweeper.unref();
  }

  /** Starts delivering to `deliver` (awaited: a slow subscriber slows its own reading). */
  async open(request: SubscribeRequest, deliver: (d: Delivery) => Promise<void>): Promise<Subscription> {
    const group = checkName(request.group, 'group');
    const consumer = request.consumer ? checkName(request.consumer, 'consumer') : randomUUID();
    const topic = request.topic ?? '';
    if (topic.length > 256) throw new SubscribeError('invalid_argument', 'topic pattern longer than 256');
    if (this.live.size >= this.config.ATLAS_SUBSCRIBE_MAX)
      throw new SubscribeError(
        'too_many_subscribers',
        `this door serves ${this.config.ATLAS_SUBSCRIBE_MAX} subscribers at most; retry later`,
      );
    const types = new Set(request.types ?? []);
    const wanted = topicMatcher(topic);
    const filter = (event_type: string, eventTopic: string) =>
      (types.size === 0 || types.has(event_type)) && wanted(eventTopic);
    await this.createGroup(GROUP_PREFIX + group);
    const reader = new Reader(this, GROUP_PREFIX + group, consumer, filter, deliver);
    const subscription: Subscription = {
      consumer,
      stop: () => reader.stop(),
      ended: reader.ended.finally(() => {
        this.live.delete(subscription);
        subscribeMetrics.subscribers.set(this.live.size);
      }),
    };
    this.live.add(subscription);
    subscribeMetrics.subscribers.set(this.live.size);
    return subscription;
  }

  /** Acknowledges delivered events for a group; returns how many were pending. */
  async ack(group: string, ids: string[]): Promise<number> {
    const name = GROUP_PREFIX + checkName(group, 'group');
    if (ids.length === 0) return 0;
    for (const id of ids)
      if (!/^\d{1,20}-\d{1,20}$/.test(id))
        throw new SubscribeError('invalid_argument', `not an event id: ${id}`);
    const acked = await this.redis.xack(this.stream, name, ...ids);
    subscribeMetrics.acknowledged.inc(acked);
    return acked;
  }

  /** Acknowledges a member's pending events up to and including `lastId` (SSE Last-Event-ID). */
  async ackThrough(group: string, consumer: string, lastId: string): Promise<number> {
    if (!/^\d{1,20}-\d{1,20}$/.test(lastId))
      throw new SubscribeError('invalid_argument', `Last-Event-ID is not an event id: ${lastId}`);
    const name = GROUP_PREFIX + checkName(group, 'group');
    const pending = (await this.redis.xpending(
      this.stream,
      name,
      '-',
      lastId,
      this.config.ATLAS_SUBSCRIBE_IN_FLIGHT,
      checkName(consumer, 'consumer'),
    )) as [string, ...unknown[]][];
    return this.ack(
      group,
      pending.map((p) => p[0]),
    );
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([...this.live].map((s) => s.stop()));
  }

  // --- for Reader ---

  get settings() {
    return {
      stream: this.stream,
      blockMs: this.config.ATLAS_BLOCK_MS,
      inFlight: this.config.ATLAS_SUBSCRIBE_IN_FLIGHT,
      redeliverMs: this.config.ATLAS_SUBSCRIBE_REDELIVER_MS,
      keys: this.keys,
      log: this.log,
    };
  }

  connection(): Redis {
    return connectWorker(this.config, 'atlas-subscriber', this.log);
  }

  /**
   * Marks the group as read from now (what its expiry counts from). Readers pass their own
   * connection: it waits out a slow or restarting Redis, where the door's fails fast.
   */
  async touch(group: string, via: Redis = this.redis): Promise<void> {
    await via.hset(this.groupsKey, group, Date.now());
  }

  private async createGroup(group: string): Promise<void> {
    // A new group starts at the events accepted from now on.
    await this.redis.xgroup('CREATE', this.stream, group, '$', 'MKSTREAM').catch((err: Error) => {
      if (!/BUSYGROUP/.test(err.message)) throw err;
    });
    await this.touch(group);
  }

  /** Deletes the groups no member has read from within the TTL. */
  async expireGroups(now = Date.now()): Promise<string[]> {
    const seen = await this.redis.hgetall(this.groupsKey);
    const limit = this.config.ATLAS_SUBSCRIBE_GROUP_TTL_S * 1000;
    const expired = Object.entries(seen).filter(([, at]) => now - Number(at) > limit);
    for (const [group] of expired) {
      await this.redis.xgroup('DESTROY', this.stream, group);
      await this.redis.hdel(this.groupsKey, group);
      subscribeMetrics.groupsExpired.inc();
      this.log.warn(
        { group, idle_s: Math.round((now - Number(seen[group])) / 1000) },
        'subscriber group deleted: no member read from it within ATLAS_SUBSCRIBE_GROUP_TTL_S; its unacknowledged events are no longer kept for it',
      );
    }
    return expired.map(([g]) => g);
  }
}

function checkName(name: string | undefined, what: string): string {
  if (!name || !NAME.test(name))
    throw new SubscribeError('invalid_argument', `${what} must be 1-64 of A-Z a-z 0-9 _ . -`);
  return name;
}

type RawEntries = [Buffer, Buffer[]][];

/** One member's read loop on its own blocking connection. */
class Reader {
  readonly ended: Promise<void>;
  private stopped = false;
  private readonly conn: Redis;
  /** Own pending entries are read first (from 0) until none is left; then null. */
  private ownFrom: string | null = '0';
  private claimFrom = '0-0';
  private claimedAt = 0;
  private touchedAt = Date.now();
  private readonly hub: Subscriptions;
  private readonly group: string;
  private readonly consumer: string;
  private readonly filter: (eventType: string, topic: string) => boolean;
  private readonly deliver: (d: Delivery) => Promise<void>;

  constructor(
    hub: Subscriptions,
    group: string,
    consumer: string,
    filter: (eventType: string, topic: string) => boolean,
    deliver: (d: Delivery) => Promise<void>,
  ) {
    this.hub = hub;
    this.group = group;
    this.consumer = consumer;
    this.filter = filter;
    this.deliver = deliver;
    this.conn = hub.connection();
    this.ended = this.loop().finally(() => this.conn.disconnect());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // A blocking read would hold the stop for up to ATLAS_BLOCK_MS: cut it.
    this.conn.disconnect();
    await this.ended.catch(() => {});
  }

  private async loop(): Promise<void> {
    try {
      while (!this.stopped) await this.turn();
    } catch (err) {
      if (!this.stopped) throw err;
    }
  }

  private async turn(): Promise<void> {
    const s = this.hub.settings;
    if (Date.now() - this.touchedAt > TOUCH_MS) {
      this.touchedAt = Date.now();
      await this.hub.touch(this.group, this.conn);
    }
    if (this.ownFrom !== null) return this.readOwn();
    if (Date.now() - this.claimedAt > CLAIM_EVERY_MS) {
      this.claimedAt = Date.now();
      await this.claimStale();
    }
    const holding = (await this.conn.xpending(
      s.stream,
      this.group,
      '-',
      '+',
      s.inFlight,
      this.consumer,
    )) as unknown[];
    if (holding.length >= s.inFlight) {
      await new Promise((r) => setTimeout(r, FULL_WAIT_MS));
      return;
    }
    const raw = (await this.conn.xreadgroupBuffer(
      'GROUP',
      this.group,
      this.consumer,
      'COUNT',
      Math.min(READ_COUNT, s.inFlight - holding.length),
      'BLOCK',
      s.blockMs,
      'STREAMS',
      s.stream,
      '>',
    )) as [Buffer, RawEntries][] | null;
    await this.handOut(raw?.[0]?.[1] ?? [], false);
  }

  /** This member's own unacknowledged events (a reconnect under the same name) come first. */
  private async readOwn(): Promise<void> {
    const s = this.hub.settings;
    const raw = (await this.conn.xreadgroupBuffer(
      'GROUP',
      this.group,
      this.consumer,
      'COUNT',
      READ_COUNT,
      'STREAMS',
      s.stream,
      this.ownFrom as string,
    )) as [Buffer, RawEntries][] | null;
    const items = raw?.[0]?.[1] ?? [];
    if (items.length === 0) {
      this.ownFrom = null;
      return;
    }
    this.ownFrom = items.at(-1)![0].toString();
    // Entries deleted under our pending ids: nothing to deliver any more; say so and drop them.
    const gone = items.filter((i) => !i[1]).map((i) => i[0].toString());
    if (gone.length > 0) await this.lost(gone);
    await this.handOut(items, true);
  }

  /** Events other members were given and left unacknowledged past the redelivery time. */
  private async claimStale(): Promise<void> {
    const s = this.hub.settings;
    const [next, raw, deleted] = (await this.conn.callBuffer(
      'XAUTOCLAIM',
      s.stream,
      this.group,
      this.consumer,
      s.redeliverMs,
      this.claimFrom,
      'COUNT',
      READ_COUNT,
    )) as unknown as [Buffer, RawEntries, Buffer[]];
    this.claimFrom = next.toString();
    if (deleted.length > 0) await this.lost(deleted.map(String));
    await this.handOut(raw, true);
  }

  private async lost(ids: string[]): Promise<void> {
    const s = this.hub.settings;
    await this.conn.xack(s.stream, this.group, ...ids);
    subscribeMetrics.lost.inc(ids.length);
    s.log.error(
      { group: this.group, ids },
      'subscriber events were deleted before the group acknowledged them (the group had expired): not delivered',
    );
  }

  private async handOut(raw: RawEntries, redelivered: boolean): Promise<void> {
    const s = this.hub.settings;
    const entries = parseEntries(raw);
    const broken = await resolveBlobs(this.conn, s.keys, entries);
    const skipped: string[] = [];
    for (const entry of entries) {
      const failure = broken.get(entry);
      if (failure) throw failure;
      const delivery = deliveryOf(entry, redelivered);
      if (!this.filter(delivery.envelope.event_type, delivery.topic)) {
        skipped.push(entry.id);
        continue;
      }
      if (this.stopped) return;
      await this.deliver(delivery);
      subscribeMetrics.delivered.inc({ redelivered: String(redelivered) });
    }
    if (skipped.length > 0) await this.conn.xack(s.stream, this.group, ...skipped);
  }
}

/** An entry's topic: the one its family gave it, else its event type. */
function deliveryOf(entry: Entry, redelivered: boolean): Delivery {
  const eventType = entry.text('event_type');
  return {
    id: entry.id,
    seq: Number(entry.text('seq')),
    topic: entry.optionalText('topic') ?? eventType,
    redelivered,
    envelope: {
      event_id: entry.text('event_id'),
      event_type: eventType,
      source: entry.text('source'),
      timestamp: Number(entry.text('timestamp')),
      version: Number(entry.text('version')),
      payload: entry.text('payload'),
    },
  };
}
