/**
 * Retention: keeps the newest ATLAS_RETAIN_ENTRIES acknowledged entries of a stream for replay
 * and inspection, and never deletes an entry some group has not acknowledged.
 */
import type { Redis } from 'ioredis';
import { groupsOf } from './backlog.ts';
import type { Keys } from './keys.ts';
import { runScript } from './scripts.ts';

const PER_CALL = 1000;

/** Entries with ids below the result are acknowledged by every group (null: nothing is). */
export async function acknowledgedBelow(redis: Redis, stream: string): Promise<string | null> {
  const groups = await groupsOf(redis, stream);
  if (groups.length === 0) return null;
  let cutoff: string | null = null;
  for (const g of groups) {
    const summary = (await redis.xpending(stream, g.name)) as [number, string | null, string | null, unknown];
    const below = summary[0] > 0 && summary[1] ? summary[1] : nextId(g.lastDeliveredId);
    if (cutoff === null || compareStreamIds(below, cutoff) < 0) cutoff = below;
  }
  return cutoff;
}

export async function trimAcknowledged(
  redis: Redis,
  keys: Keys,
  stream: string,
  retain: number,
): Promise<number> {
  const cutoff = await acknowledgedBelow(redis, stream);
  if (cutoff === null || cutoff === '0-1') return 0;
  return (await runScript(
    redis,
    'trim-acknowledged',
    [stream, keys.blobRefs],
    [cutoff, retain, PER_CALL, keys.blob('')],
  )) as number;
}

function nextId(id: string): string {
  const [ms, seq] = id.split('-');
  return `${ms}-${BigInt(seq ?? '0') + 1n}`;
}

export function compareStreamIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am !== bm ? (am < bm ? -1 : 1) : as === bs ? 0 : as < bs ? -1 : 1;
}
