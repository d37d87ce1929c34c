/**
 * The real Redis the suite runs against, a unique key prefix per test file (or test), and the
 * cleanup of that prefix's keys afterwards. Tests never mock Redis.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  /**
   * Stops the server (SHUTDOWN: with an AOF it is flushed first) and starts it again on the same
   * port; without `keepData` its files are deleted in between, so it comes back empty.
   */
  restart(opts: { keepData: boolean }): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A throwaway redis-server on a spare port, for tests that take Redis away. With `aof` it keeps
 * an append-only file (fsync every second, like ops/services) in a directory of its own, so a
 * restart keeps the data.
 */
export async function startScratchRedis(opts: { aof?: boolean } = {}): Promise<ScratchRedis> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'atlas-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
  args.push(...(opts.aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no']));
  const launch = async () => {
    const proc = spawn('redis-server', args, { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    await waitForPing(url);
    return { proc, exited };
  };
  let server = await launch();
  const kill = async (signal: NodeJS.Signals) => {
    const { proc, exited } = server;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGCONT');
    proc.kill(signal);
    await exited;
  };
  return {
    url,
    port,
    pause: () => server.proc.kill('SIGSTOP'),
    resume: () => server.proc.kill('SIGCONT'),
    restart: async ({ keepData }) => {
      await kill(keepData ? 'SIGTERM' : 'SIGKILL');
      if (!keepData) {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir);
      }
      server = await launch();
    },
    stop: async () => {
      await kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until a server answers PING (10 s at most). */
async function waitForPing(url: string): Promise<void> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => undefined);
  const deadline = Date.now() + 10_000;
  try {
    for (;;) {
      try {
        await probe.connect();
        await probe.ping();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        probe.disconnect();
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    probe.disconnect();
  }
}
