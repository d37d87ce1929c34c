/**
 * Redis memory as INFO memory reports it. A Redis without `maxmemory` grows until the machine
 * runs out; one with an evicting policy may silently drop stream entries. The door refuses
 * writes above a share of `maxmemory`, read periodically, never per request.
 */
import type { Redis } from 'ioredis';
import type { Logger } from './log.ts';

export interface RedisMemory {
  used: number;
  /** 0 = no limit. */
  max: number;
  policy: string;
}

export async function redisMemory(redis: Redis): Promise<RedisMemory> {
  const info = await redis.info('memory');
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
  return {
    used: Number(field('used_memory')),
    max: Number(field('maxmemory')),
    policy: field('maxmemory_policy'),
  };
}

/** Why this Redis may lose data or fill the machine (null: it is set up safely). */
export function memoryRisk(m: RedisMemory): string | null {
  if (m.max === 0)
    return 'Redis has no maxmemory: hostile or runaway input can grow it until the machine runs out';
  if (m.policy !== 'noeviction')
    return `Redis maxmemory-policy is ${m.policy}: it may evict stream entries, blobs or dedup keys (set noeviction)`;
  return null;
}

/** Redis refused a write at maxmemory (policy noeviction); nothing of the command ran. */
export function isOutOfMemory(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('OOM ');
}

export interface MemoryWatch {
  /** Percent of maxmemory in use when over the limit, else null. */
  over(): number | null;
  stop(): void;
}

/**
 * Reads INFO memory every `refreshMs`; warns once (one line) when the setup is unsafe. `onRead`
 * sees every reading (the door's gauges).
 */
export function watchMemory(
  redis: Redis,
  limitPercent: number,
  refreshMs: number,
  log: Logger,
  onRead: (m: RedisMemory) => void = () => {},
): MemoryWatch {
  let percent = 0;
  let warned = false;
  const refresh = () =>
    redisMemory(redis).then(
      (m) => {
        percent = m.max > 0 ? (m.used / m.max) * 100 : 0;
        onRead(m);
        const risk = warned ? null : memoryRisk(m);
        warned = true;
        if (risk) log.warn({ maxmemory: m.max, policy: m.policy }, risk);
      },
      () => {}, // Redis down: requests answer 503 on their own
    );
  void refresh();
  const timer = setInterval(refresh, refreshMs);
  timer.unref();
  return {
    over: () => (percent > limitPercent ? Math.round(percent) : null),
    stop: () => clearInterval(timer),
  };
}
