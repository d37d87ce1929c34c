/**
 * Accepting events: one script call per request (per ingest lane in it) does dedup, dense global
 * `seq` and XADD atomically (append-idempotent.lua), so a 202 means Redis has the entry.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type Blob, checkFields } from '../../pipeline/claim-check.ts';
import { StateLostError } from '../../pipeline/generation.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { streams } from '../../pipeline/keys.ts';
import { laneStream } from '../../pipeline/lanes.ts';
import { runScript } from '../../pipeline/scripts.ts';
import type { Fence } from '../../pipeline/stage.ts';
import { lookup } from '../families/registry.ts';
import type { Envelope } from './envelope.ts';

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

type RequestContext = { traceparent: string; requestId: string };

/**
 * Critical events (by their family's declaration) go to their own ingest lane, appended first:
 * they must not queue behind a flood on `ingest` at validate. Both lanes share the dedup keys and
 * the global seq; validate writes the skip markers that keep `validated` dense.
 */
export async function accept(
  redis: Redis,
  opts: AcceptOptions,
  envelopes: Envelope[],
  context: RequestContext,
): Promise<Accepted[]> {
  const critical = envelopes.map((e) => lookup(e.event_type)?.spec.priority === 'critical');
  if (!critical.includes(true)) return append(redis, opts, streams.ingest, envelopes, context);
  const first = await append(
    redis,
    opts,
    laneStream(streams.ingest, 'critical'),
    envelopes.filter((_, i) => critical[i]),
    context,
  );
  const rest = envelopes.some((_, i) => !critical[i])
    ? await append(
        redis,
        opts,
        streams.ingest,
        envelopes.filter((_, i) => !critical[i]),
        context,
      )
    : [];
  return critical.map((isCritical) => (isCritical ? first.shift()! : rest.shift()!));
}

async function append(
  redis: Redis,
  opts: AcceptOptions,
  stream: string,
  envelopes: Envelope[],
  context: RequestContext,
): Promise<Accepted[]> {
  const blobs: Blob[] = [];
  const perEvent: (string | number | Buffer)[] = [];
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
      opts.claimCheckBytes,
    );
    blobs.push(...checked.blobs);
    perEvent.push(e.event_id, checked.blobs.length > 0 ? 1 : 0, checked.flat.length, ...checked.flat);
  }
  const { keys } = opts;
  const args: (string | number | Buffer)[] = [
    opts.dedupWindowS,
    keys.of('dedup', ''),
    keys.blob(''),
    blobs.length,
  ];
  for (const b of blobs) args.push(b.sha, b.bytes);
  args.push(envelopes.length, ...perEvent);
  const generation = await opts.generation();
  args.push(generation.token);
  const rows = (await runScript(
    redis,
    'append-idempotent',
    [keys.stream(stream), keys.seq, keys.blobRefs, generation.key],
    args,
  ).catch((err: unknown) => {
    throw err instanceof Error && err.message.startsWith('STATE_LOST')
      ? new StateLostError(err.message)
      : err;
  })) as [number, string, number][];
  return rows.map(([seq, id, dup], i) => ({
    event_id: envelopes[i]!.event_id,
    seq,
    id,
    duplicate: dup === 1,
  }));
}
