/**
 * Accepting events: one script call per request does dedup, dense global `seq` and XADD
 * atomically (append-idempotent.lua), so a 202 means Redis has the entry.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { checkFields, type Blob } from '../../pipeline/claim-check.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { streams } from '../../pipeline/keys.ts';
import { runScript } from '../../pipeline/scripts.ts';
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
}

/** A W3C traceparent: the caller's when valid, else a fresh sampled one. */
export function traceparentFor(header: string | undefined): string {
  if (header && /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/.test(header)) return header;
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}

export async function accept(
  redis: Redis,
  opts: AcceptOptions,
  envelopes: Envelope[],
  context: { traceparent: string; requestId: string },
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
    perEvent.push(e.event_id, checked.flat.length, ...checked.flat);
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
  const rows = (await runScript(
    redis,
    'append-idempotent',
    [keys.stream(streams.ingest), keys.seq, keys.blobRefs],
    args,
  )) as [number, string, number][];
  return rows.map(([seq, id, dup], i) => ({
    event_id: envelopes[i]!.event_id,
    seq,
    id,
    duplicate: dup === 1,
  }));
}
