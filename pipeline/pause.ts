/**
 * An operator's pause of a stage (`atlas pause`): its instances keep running (lease, heartbeat,
 * /ready) but read nothing until `atlas resume`. One key per stage, so every instance sees it.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';

export function pauseKey(keys: Keys, stage: string): string {
  return keys.of('paused', stage);
}

export async function isPaused(redis: Redis, keys: Keys, stage: string): Promise<boolean> {
  return (await redis.exists(pauseKey(keys, stage))) === 1;
}
