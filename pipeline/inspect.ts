/** A readable view of XINFO for every stream of the pipeline (`atlas streams`), and replay. */
import type { Redis } from 'ioredis';
import { groupsOf } from './backlog.ts';
import type { Keys } from './keys.ts';

export interface StreamView {
  stream: string;
  length: number;
  groups: Array<{
    name: string;
    consumers: number;
    lag: number | null;
    pending: number;
    oldestPendingAgeMs: number | null;
  }>;
}

export async function streamKeys(redis: Redis, keys: Keys): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await redis.call(
      'SCAN',
      cursor,
      'MATCH',
      keys.stream('*'),
      'COUNT',
      1000,
      'TYPE',
      'stream',
    )) as [string, string[]];
    found.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return found.sort();
}

export async function describeStreams(redis: Redis, keys: Keys): Promise<StreamView[]> {
  const views: StreamView[] = [];
  for (const stream of await streamKeys(redis, keys)) {
    const groups = [];
    for (const g of await groupsOf(redis, stream)) {
      const summary = (await redis.xpending(stream, g.name)) as [
        number,
        string | null,
        string | null,
        unknown,
      ];
      const oldest = summary[1] ? Date.now() - Number(summary[1].split('-')[0]) : null;
      groups.push({
        name: g.name,
        consumers: g.consumers,
        lag: g.lag,
        pending: g.pending,
        oldestPendingAgeMs: oldest,
      });
    }
    views.push({ stream, length: await redis.xlen(stream), groups });
  }
  return views;
}

/**
 * Replays a stage from a stream offset: its group reads again everything after `fromId`
 * ('0' = the start of what is retained). Order-sensitive stages drop what they have already
 * applied, so a replay of those only re-processes entries past their checkpoint.
 */
export async function replay(redis: Redis, stream: string, group: string, fromId: string): Promise<void> {
  await redis.xgroup('SETID', stream, group, fromId);
}
