/**
 * Retention: keeps the newest ATLAS_RETAIN_ENTRIES acknowledged entries of a stream for replay
 * and inspection, and never deletes an entry some group has not acknowledged.
 */
import type { Redis } from 'ioredis';
import { type GroupInfo, groupsOf } from './backlog.ts';
import type { Config } from './config.ts';
import type { Keys } from './keys.ts';
import { runScript } from './scripts.ts';

const PER_CALL = 1000;

/** Entries with ids below the result are acknowledged by every group (null: nothing is). */
export async function acknowledgedBelow(
  redis: Redis,
  stream: string,
  groups: GroupInfo[],
): Promise<string | null> {
  let cutoff: string | null = null;
  for (const g of groups) {
    const summary = (await redis.xpending(stream, g.name)) as [number, string | null, string | null, unknown];
    const below = summary[0] > 0 && summary[1] ? summary[1] : nextId(g.lastDeliveredId);
    if (cutoff === null || compareStreamIds(below, cutoff) < 0) cutoff = below;
  }
  return cutoff;
}

/** Entries kept of a stream: its ATLAS_RETAIN_STREAMS entry, else ATLAS_RETAIN_ENTRIES. */
export function retainFor(
  config: Pick<Config, 'ATLAS_RETAIN_ENTRIES' | 'ATLAS_RETAIN_STREAMS'>,
  stream: string,
): number {
  return config.ATLAS_RETAIN_STREAMS[stream] ?? config.ATLAS_RETAIN_ENTRIES;
}

/**
 * Deletes the oldest acknowledged entries beyond the newest `retain` of them, at most PER_CALL
 * per call, never `floor` or anything after it (what a stage still needs to rebuild its state).
 * Cheap when there is nothing to do (XLEN and XINFO): it runs every second per stage.
 */
export async function trimAcknowledged(
  redis: Redis,
  keys: Keys,
  stream: string,
  retain: number,
  floor?: string,
): Promise<number> {
  const length = await redis.xlen(stream);
  if (length <= retain) return 0;
  const groups = await groupsOf(redis, stream);
  if (groups.length === 0) return 0;
  // An upper bound on what some group has not acknowledged (an unknown lag counts as all).
  const unacknowledged = Math.max(...groups.map((g) => (g.lag ?? length) + g.pending));
  const count = Math.min(PER_CALL, length - retain - unacknowledged);
  if (count <= 0) return 0;
  const acknowledged = await acknowledgedBelow(redis, stream, groups);
  if (acknowledged === null) return 0;
  const cutoff = floor !== undefined && compareStreamIds(floor, acknowledged) < 0 ? floor : acknowledged;
  return (await runScript(
    redis,
    'trim-acknowledged',
    [stream, keys.blobRefs],
    [cutoff, count, keys.blob('')],
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
