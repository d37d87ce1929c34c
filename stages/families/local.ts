/**
 * Stored `local` events: appended by the publish stage to `local:<event_type>`, read by
 * `GET /events?type=&since=` and `atlas events query`. Expiry is by design: a query never returns
 * an event past its TTL, and the publish stage trims what was received longer than the TTL ago.
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../../pipeline/keys.ts';
import { localStream } from '../streams.ts';
import { registered } from './registry.ts';

export interface LocalEvent {
  event_id: string;
  event_type: string;
  version: number;
  source: string;
  timestamp: number;
  key: string;
  expires_at: number;
  /** When the pipeline stored it (the stream entry id's time), ms since epoch. */
  stored_at: number;
  payload: unknown;
}

/** The event types whose propagation is `local`. */
export function localTypes(): string[] {
  return registered()
    .filter((r) => r.spec.propagation === 'local')
    .map((r) => r.eventType);
}

export class NotLocalError extends Error {
  constructor(eventType: string) {
    super(`event type ${eventType} is not a local one (local types: ${localTypes().join(', ') || 'none'})`);
    this.name = 'NotLocalError';
  }
}

/** Stored events of `eventType` since `since` (ms since epoch, by storage time), oldest first, unexpired. */
export async function queryLocal(
  redis: Redis,
  keys: Keys,
  eventType: string,
  since: number,
  limit: number,
  now = Date.now(),
): Promise<LocalEvent[]> {
  if (!localTypes().includes(eventType)) throw new NotLocalError(eventType);
  const raw = await redis.xrange(
    keys.stream(localStream(eventType)),
    `${Math.max(0, since)}-0`,
    '+',
    'COUNT',
    limit,
  );
  const out: LocalEvent[] = [];
  for (const [id, flat] of raw) {
    const f: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
    const expiresAt = Number(f.expires_at);
    if (expiresAt > 0 && expiresAt <= now) continue;
    out.push({
      event_id: f.event_id!,
      event_type: f.event_type!,
      version: Number(f.version),
      source: f.source!,
      timestamp: Number(f.timestamp),
      key: f.key!,
      expires_at: expiresAt,
      stored_at: Number(id.split('-')[0]),
      payload: JSON.parse(f.payload!),
    });
  }
  return out;
}

/** Drops stored events received longer than their type's TTL ago (they can no longer be returned). */
export async function trimLocal(redis: Redis, keys: Keys, now = Date.now()): Promise<void> {
  for (const r of registered()) {
    if (r.spec.propagation !== 'local' || r.spec.ttlMs <= 0) continue;
    await redis.xtrim(keys.stream(localStream(r.eventType)), 'MINID', now - r.spec.ttlMs);
  }
}
