/**
 * The real Redis the suite runs against, a unique key prefix per test file (or test), and the
 * cleanup of that prefix's keys afterwards. Tests never mock Redis.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { Generation } from '../../pipeline/generation.ts';
import { type Keys, keys as keysFor } from '../../pipeline/keys.ts';
import type { Fence } from '../../pipeline/stage.ts';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export function uniquePrefix(tag = 't'): string {
  return `${tag}-${randomBytes(5).toString('hex')}`;
}

/** A plain client for the test itself (RESP2, like the pipeline's own connections). */
export function connect(url = REDIS_URL): Redis {
  return new Redis(url, { protocol: 2, maxRetriesPerRequest: 3, lazyConnect: false });
}

/** Deletes every key of a prefix (`{prefix}:*`). */
export async function cleanup(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
    if (found.length > 0) deleted += await redis.del(...found);
    cursor = next;
  } while (cursor !== '0');
  return deleted;
}

/** Keys of a prefix, for assertions about what exists (e.g. blobs). */
export async function keysMatching(redis: Redis, pattern: string): Promise<string[]> {
  let cursor = '0';
  const out: string[] = [];
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    out.push(...found);
    cursor = next;
  } while (cursor !== '0');
  return out.sort();
}

export interface RedisFixture {
  readonly redis: Redis;
  readonly prefix: string;
  readonly keys: Keys;
  /** A further prefix, cleaned up with this fixture (for tests that want a fresh namespace). */
  freshPrefix(tag?: string): { prefix: string; keys: Keys };
}

/**
 * Registers beforeAll/afterAll hooks in the calling scope: one client and one prefix for the
 * file (or describe block); every prefix handed out is cleaned up at the end.
 */
export function useRedis(tag = 't'): RedisFixture {
  let client: Redis | undefined;
  const prefixes = [uniquePrefix(tag)];
  beforeAll(async () => {
    client = connect();
    await client.ping();
  });
  afterAll(async () => {
    if (!client) return;
    for (const p of prefixes) await cleanup(client, p);
    client.disconnect();
  });
  return {
    get redis() {
      if (!client) throw new Error('useRedis: used outside a test');
      return client;
    },
    prefix: prefixes[0]!,
    keys: keysFor(prefixes[0]!),
    freshPrefix(t = tag) {
      const prefix = uniquePrefix(t);
      prefixes.push(prefix);
      return { prefix, keys: keysFor(prefix) };
    },
  };
}

/** A prefix's pipeline generation, joined as a door does: what accept() checks its appends against. */
export async function joinedGeneration(redis: Redis, keys: Keys): Promise<Fence> {
  const g = await Generation.join(redis, keys);
  return { key: g.key, token: g.id };
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ScratchRedis {
  url: string;
  port: number;
  /** SIGSTOP: the server hangs (connections stay open, nothing answers). */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  /** A new, empty server on the same port (clients reconnect to it). */
  restart(): Promise<void>;
}

/** A throwaway redis-server on a spare port, for tests that take Redis away. */
export async function startScratchRedis(): Promise<ScratchRedis> {
  const port = await freePort();
  let server = await spawnRedis(port);
  return {
    url: server.url,
    port,
    pause: () => server.proc.kill('SIGSTOP'),
    resume: () => server.proc.kill('SIGCONT'),
    stop: () => server.stop(),
    restart: async () => {
      await server.stop();
      server = await spawnRedis(port);
    },
  };
}

async function spawnRedis(port: number) {
  const { spawn } = await import('node:child_process');
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const url = `redis://127.0.0.1:${port}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {}); // refused until the server listens: connect() below says so
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await probe.connect();
      await probe.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  probe.disconnect();
  return {
    url,
    proc,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
      await exited;
    },
  };
}
