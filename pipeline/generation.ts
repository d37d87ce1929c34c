/**
 * Lost state is detected, never papered over. The pipeline has an identity in Redis (a
 * generation id written at first start); every process remembers the id it joined, and every
 * write (commit.lua, append-idempotent.lua) checks it. A Redis restarted without its data, a
 * FLUSHALL, or a pipeline marked lost by a stage that found its output ahead of its state, no
 * longer carries that id: processes stop and say so until `atlas recover` writes a new
 * generation and marks it as recovered, which processes then adopt.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';
import { runScript } from './scripts.ts';

/** The pipeline's state in Redis is gone or was declared lost: stop, do not write. */
export class StateLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateLostError';
  }
}

/** Where the generation lives, for scripts that check it. */
export function generationKeys(keys: Keys) {
  return {
    current: keys.of('generation'),
    lineage: keys.of('generation', 'lineage'),
    recovered: keys.of('generation', 'recovered'),
  };
}

export function newGenerationId(): string {
  return `${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${randomBytes(4).toString('hex')}`;
}

/** The value a stage writes to declare the pipeline's state lost (read back as "lost: why"). */
export const LOST_PREFIX = 'lost:';

export class Generation {
  private readonly redis: Redis;
  private readonly keys: ReturnType<typeof generationKeys>;
  id: string;

  private constructor(redis: Redis, keys: Keys, id: string) {
    this.redis = redis;
    this.keys = generationKeys(keys);
    this.id = id;
  }

  /** Joins the generation in Redis, writing a new one when Redis has none (first start). */
  static async join(redis: Redis, keys: Keys): Promise<Generation> {
    const k = generationKeys(keys);
    const id = String(await runScript(redis, 'generation-join', [k.current, k.lineage], [newGenerationId()]));
    return new Generation(redis, keys, id);
  }

  get key(): string {
    return this.keys.current;
  }

  /**
   * null while the state is ours; else why not. A generation that `atlas recover` wrote
   * (marked recovered) is adopted, and then the state is ours again.
   */
  async check(): Promise<string | null> {
    const [current = null, recovered = null] = await this.redis.mget(this.keys.current, this.keys.recovered);
    if (current === this.id) return null;
    if (current !== null && current === recovered) {
      this.id = current;
      return null;
    }
    return lostReason(current, this.id);
  }

  /** Declares the pipeline's state lost for every process (they stop until `atlas recover`). */
  async declareLost(why: string): Promise<void> {
    await this.redis.set(this.keys.current, `${LOST_PREFIX}${why}`);
  }

  /** Generations whose output this Redis's state continues (its own, and recovered ones). */
  async lineage(): Promise<Set<string>> {
    return new Set(await this.redis.smembers(this.keys.lineage));
  }
}

function lostReason(current: string | null, known: string): string {
  if (current === null)
    return `the pipeline's state in Redis is gone (generation ${known} missing: Redis restarted without its data, or flushed)`;
  if (current.startsWith(LOST_PREFIX))
    return `the pipeline's state was declared lost: ${current.slice(LOST_PREFIX.length)}`;
  return `Redis holds another pipeline generation (${current}, this process joined ${known}): its state was replaced`;
}

export interface GenerationWatch {
  /** The generation to check writes against (joined on first use). */
  fence(): Promise<{ key: string; token: string }>;
  /** Why the state is not ours any more, as of the last check; null while it is. */
  lost(): string | null;
  /** Checks now (adopting a recovered generation); resolves to lost(). */
  refresh(): Promise<string | null>;
  stop(): void;
}

/**
 * For a process that writes without a worker (the door): joins on first use, then checks about
 * once a second, so readiness reports lost state and a recovered generation is adopted.
 */
export function watchGeneration(redis: Redis, keys: Keys, everyMs = 1000): GenerationWatch {
  let joined: Promise<Generation> | undefined;
  let why: string | null = null;
  const join = () => {
    joined ??= Generation.join(redis, keys).catch((err: unknown) => {
      joined = undefined;
      throw err;
    });
    return joined;
  };
  const refresh = async () => {
    why = await (await join()).check();
    return why;
  };
  // Redis unreachable: readiness says so on its own.
  const timer = setInterval(() => void refresh().catch(() => {}), everyMs);
  timer.unref();
  return {
    fence: async () => {
      const g = await join();
      return { key: g.key, token: g.id };
    },
    lost: () => why,
    refresh,
    stop: () => clearInterval(timer),
  };
}
