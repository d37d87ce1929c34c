/**
 * Deleting a pipeline's keys (every `{prefix}:*`): `atlas recover` starts its state afresh with it,
 * `atlas cleanup` removes a pipeline.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';

/** Deletes every key of the pipeline; returns how many there were. */
export async function deletePipelineKeys(redis: Redis, keys: Keys): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', keys.of('*'), 'COUNT', 1000);
    if (found.length > 0) deleted += await redis.unlink(...found);
    cursor = next;
  } while (cursor !== '0');
  return deleted;
}

/** Every key of the pipeline, sorted (what a cleanup would delete). */
export async function pipelineKeys(redis: Redis, keys: Keys): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', keys.of('*'), 'COUNT', 1000);
    found.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return found.sort();
}
