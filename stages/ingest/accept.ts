/**
 * Accepting events: dedup, dense global `seq` and XADD happen atomically in one
 * append-idempotent.lua call, so a 202 means Redis has the entry. The events of concurrent
 * requests are merged into one call per event-loop turn (`Acceptor`): at a few thousand requests
 * a second, one script call and one reply per request was a quarter of the door's CPU.
 * Critical events (by their family's declaration) go to their own ingest lane, appended first:
 * they must not queue behind a flood on `ingest` at validate. Both lanes share the dedup keys and
 * the global seq; validate writes the skip markers that keep `validated` dense.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type Blob, checkFields } from '../../pipeline/claim-check.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { laneStream } from '../../pipeline/lanes.ts';
import { runScript } from '../../pipeline/scripts.ts';
import type { Fence } from '../../pipeline/stage.ts';
import { lookup } from '../families/registry.ts';
import { streams } from '../streams.ts';
import type { Envelope } from './envelope.ts';
import { ingestMetrics } from './metrics.ts';

export interface Accepted {
  event_id: string;
  seq: number;
  id: string;
  duplicate: boolean;
}

export interface AcceptOptions {
  keys: Keys;
  dedupWindowS: number;
  claimCheckBytes: number;
  /** The pipeline generation the door joined: appends are refused when Redis lost it. */
  generation: () => Promise<Fence>;
}

const TRACEPARENT = /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/;

// Fresh ids come from a pool of random bytes refilled 256 requests at a time: one
// randomBytes call per request costs more than the rest of the id work together.
const ID_BYTES = 24;
const POOL_BYTES = ID_BYTES * 256;
let pool = Buffer.alloc(0);
let poolAt = 0;

/** A W3C traceparent: the caller's when valid, else a fresh sampled one. */
export function traceparentFor(header: string | undefined): string {
  if (header && TRACEPARENT.test(header)) return header;
  if (poolAt + ID_BYTES > pool.length) {
    pool = randomBytes(POOL_BYTES);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt += ID_BYTES;
  return `00-${pool.toString('hex', at, at + 16)}-${pool.toString('hex', at + 16, at + ID_BYTES)}-01`;
}

type Arg = string | number | Buffer;
type Row = [number, string, number];

/** One request's events as script arguments. */
interface Prepared {
  envelopes: Envelope[];
  blobs: Blob[];
  perEvent: Arg[];
}

/** A request waiting for the next call. */
interface Waiting extends Prepared {
  done: (rows: Row[]) => void;
  fail: (err: unknown) => void;
}

/**
 * The door's writer: requests hand their events over and get their own answers back, while
 * every request that arrived in the same event-loop turn shares one script call. The script
 * takes the events in order, so merging changes nothing a request can see: a duplicate inside
 * the call (even across two requests) gets the first acceptance, each event its own seq. A
 * failed call fails every request in it, as it failed the one request before — all of them
 * answer 503 or 429 and their senders retry with the same event_ids.
 */
export class Acceptor {
  private readonly redis: Redis;
  private readonly opts: AcceptOptions;
  /** Most events in one merged call (a request larger than this still goes whole). */
  private readonly maxEventsPerCall: number;
  /** By ingest lane stream; the critical lane is flushed first. */
  private waiting = new Map<string, Waiting[]>();
  private scheduled = false;

  constructor(redis: Redis, opts: AcceptOptions, maxEventsPerCall: number) {
    this.redis = redis;
    this.opts = opts;
    this.maxEventsPerCall = maxEventsPerCall;
  }

  accept(envelopes: Envelope[], context: RequestContext): Promise<Accepted[]> {
    return byLane(envelopes, (stream, part) => this.enqueue(stream, part, context));
  }

  private enqueue(stream: string, envelopes: Envelope[], context: RequestContext): Promise<Accepted[]> {
    const prepared = prepare(envelopes, context, this.opts.claimCheckBytes);
    return new Promise<Row[]>((done, fail) => {
      const queue = this.waiting.get(stream) ?? [];
      queue.push({ ...prepared, done, fail });
      this.waiting.set(stream, queue);
      if (this.scheduled) return;
      this.scheduled = true;
      // After the poll phase: every request whose bytes came in this turn is waiting by then.
      setImmediate(() => this.flush());
    }).then((rows) => answers(envelopes, rows));
  }

  private flush(): void {
    const lanes = [...this.waiting].sort(([a], [b]) => Number(b === CRITICAL) - Number(a === CRITICAL));
    this.waiting = new Map();
    this.scheduled = false;
    for (const [stream, all] of lanes)
      for (const group of split(all, this.maxEventsPerCall)) void this.call(stream, group);
  }

  private async call(stream: string, group: Waiting[]): Promise<void> {
    let events = 0;
    for (const w of group) events += w.envelopes.length;
    ingestMetrics.callEvents.observe(events);
    try {
      const rows = await append(this.redis, this.opts, stream, group);
      let at = 0;
      for (const w of group) {
        w.done(rows.slice(at, at + w.envelopes.length));
        at += w.envelopes.length;
      }
    } catch (err) {
      for (const w of group) w.fail(err);
    }
  }
}

/** Consecutive requests in groups of at most `max` events (a bigger request alone). */
function split(all: Waiting[], max: number): Waiting[][] {
  const groups: Waiting[][] = [];
  let group: Waiting[] = [];
  let events = 0;
  for (const w of all) {
    if (group.length > 0 && events + w.envelopes.length > max) {
      groups.push(group);
      group = [];
      events = 0;
    }
    group.push(w);
    events += w.envelopes.length;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

type RequestContext = { traceparent: string; requestId: string };

const CRITICAL = laneStream(streams.ingest, 'critical');

/** Accepts the critical events of a request on their lane first, the others on `ingest`; answers in order. */
async function byLane(
  envelopes: Envelope[],
  acceptOn: (stream: string, part: Envelope[]) => Promise<Accepted[]>,
): Promise<Accepted[]> {
  const critical = envelopes.map((e) => lookup(e.event_type)?.spec.priority === 'critical');
  if (!critical.includes(true)) return acceptOn(streams.ingest, envelopes);
  const rest = envelopes.filter((_, i) => !critical[i]);
  const [first, others] = await Promise.all([
    acceptOn(
      CRITICAL,
      envelopes.filter((_, i) => critical[i]),
    ),
    rest.length > 0 ? acceptOn(streams.ingest, rest) : Promise.resolve([]),
  ]);
  return critical.map((isCritical) => (isCritical ? first.shift()! : others.shift()!));
}

/** The events of one request in script calls of their own (no merging), one per ingest lane. */
export function accept(
  redis: Redis,
  opts: AcceptOptions,
  envelopes: Envelope[],
  context: RequestContext,
): Promise<Accepted[]> {
  return byLane(envelopes, async (stream, part) => {
    const rows = await append(redis, opts, stream, [prepare(part, context, opts.claimCheckBytes)]);
    return answers(part, rows);
  });
}

function answers(envelopes: Envelope[], rows: Row[]): Accepted[] {
  return rows.map(([seq, id, dup], i) => ({
    event_id: envelopes[i]!.event_id,
    seq,
    id,
    duplicate: dup === 1,
  }));
}

function prepare(envelopes: Envelope[], context: RequestContext, claimCheckBytes: number): Prepared {
  const blobs: Blob[] = [];
  const perEvent: Arg[] = [];
  const receivedAt = String(Date.now());
  for (const e of envelopes) {
    const checked = checkFields(
      {
        event_id: e.event_id,
        event_type: e.event_type,
        version: String(e.version),
        source: e.source,
        timestamp: String(e.timestamp),
        payload: JSON.stringify(e.payload),
        received_at: receivedAt,
        traceparent: context.traceparent,
        request_id: context.requestId,
      },
      claimCheckBytes,
    );
    blobs.push(...checked.blobs);
    perEvent.push(e.event_id, checked.blobs.length > 0 ? 1 : 0, checked.flat.length, ...checked.flat);
  }
  return { envelopes, blobs, perEvent };
}

/** One append-idempotent.lua call for the events of `group`, in order. */
async function append(redis: Redis, opts: AcceptOptions, stream: string, group: Prepared[]): Promise<Row[]> {
  const { keys } = opts;
  const args: Arg[] = [opts.dedupWindowS, keys.of('dedup', ''), keys.blob('')];
  const blobs = group.flatMap((w) => w.blobs);
  args.push(blobs.length);
  for (const b of blobs) args.push(b.sha, b.bytes);
  let events = 0;
  for (const w of group) events += w.envelopes.length;
  args.push(events);
  for (const w of group) for (const a of w.perEvent) args.push(a);
  const generation = await opts.generation();
  args.push(generation.token);
  // A refusal comes back typed (runScript): STATE_LOST is a StateLostError.
  return (await runScript(
    redis,
    'append-idempotent',
    [keys.stream(stream), keys.seq, keys.blobRefs, generation.key],
    args,
  )) as Row[];
}
