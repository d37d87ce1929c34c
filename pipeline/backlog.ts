/** How far behind a stream's readers are: the signal for backpressure, /ready and `atlas streams`. */
import type { Redis } from 'ioredis';

export interface GroupInfo {
  name: string;
  consumers: number;
  pending: number;
  lastDeliveredId: string;
  lag: number | null;
}

export async function groupsOf(redis: Redis, stream: string): Promise<GroupInfo[]> {
  let raw: unknown[];
  try {
    raw = (await redis.xinfo('GROUPS', stream)) as unknown[];
  } catch (err) {
    if (err instanceof Error && /no such key/i.test(err.message)) return [];
    throw err;
  }
  return raw.map((g) => {
    const flat = g as unknown[];
    const get = (k: string): unknown => flat[flat.indexOf(k) + 1];
    const lag = get('lag');
    return {
      name: String(get('name')),
      consumers: Number(get('consumers')),
      pending: Number(get('pending')),
      lastDeliveredId: String(get('last-delivered-id')),
      lag: lag === null || lag === undefined ? null : Number(lag),
    };
  });
}

/**
 * Unread plus unacknowledged entries of the slowest group (the whole stream when none reads it);
 * `counts` picks the groups that count (default: all).
 */
export async function backlog(
  redis: Redis,
  stream: string,
  counts: (group: string) => boolean = () => true,
): Promise<number> {
  const groups = (await groupsOf(redis, stream)).filter((g) => counts(g.name));
  if (groups.length === 0) return redis.xlen(stream);
  let worst = 0;
  for (const g of groups) {
    const lag = g.lag ?? (await redis.xlen(stream));
    worst = Math.max(worst, lag + g.pending);
  }
  return worst;
}
