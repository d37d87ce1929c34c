/**
 * A paused stage: a flag in Redis that the stage's instances read between batches (the control
 * plane sets and clears it) and that `atlas streams` and /ready show. One place defines the key,
 * so the writer and every reader agree on it.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';

export function pauseKey(keys: Keys, stage: string): string {
  return keys.of('paused', stage);
}

export async function isPaused(redis: Redis, keys: Keys, stage: string): Promise<boolean> {
  return (await redis.exists(pauseKey(keys, stage))) === 1;
}
