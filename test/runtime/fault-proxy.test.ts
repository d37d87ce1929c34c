/**
 * The fault proxy (test/support/fault-proxy.ts) against the real Redis: each fault as an ioredis
 * client sees it, in-process and as a standalone process driven over its control port.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../support/eventually.ts';
import { FaultProxy, ProxyModeError, type ProxyStats } from '../support/fault-proxy.ts';
import { postJson, request } from '../support/http.ts';
import { ROOT } from '../support/processes.ts';
import { REDIS_URL, useRedis } from '../support/redis.ts';
import { addEntries } from '../support/streams.ts';

const fx = useRedis('proxy');
const target = new URL(REDIS_URL).host;
const proxies: FaultProxy[] = [];
const clients: Redis[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  for (const p of proxies.splice(0)) await p.stop();
});

async function proxy(protocol: 'resp' | 'raw' = 'resp'): Promise<FaultProxy> {
  const p = await FaultProxy.start({ target, protocol });
  proxies.push(p);
  return p;
}

/** A client like the pipeline's workers: RESP2, retries forever, re-sends unanswered commands. */
function client(url: string, opts: RedisOptions = {}): Redis {
  const c = new Redis(url, { protocol: 2, maxRetriesPerRequest: null, retryStrategy: () => 50, ...opts });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

/** The next `event` of a client (events.once would reject on the client's 'error' events). */
function next(c: Redis, event: string): Promise<void> {
  return new Promise((resolve) => c.once(event, () => resolve()));
}

/** Writes raw bytes on a fresh connection and collects what comes back until the peer closes. */
async function rawExchange(port: number, bytes: string): Promise<{ reply: string; error?: string }> {
  const socket = createConnection(port, '127.0.0.1');
  let reply = '';
  socket.setEncoding('utf8').on('data', (d: string) => {
    reply += d;
  });
  socket.write(bytes);
  const error = await new Promise<string | undefined>((resolve) => {
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
    socket.once('close', () => resolve(undefined));
  });
  return error === undefined ? { reply } : { reply, error };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

describe('the fault proxy in front of Redis', () => {
  it('passes pipelined traffic through unchanged', async () => {
    const p = await proxy();
    const c = client(p.redisUrl);
    const key = fx.keys.of('pass');
    const results = await c.pipeline().set(key, 'v').get(key).del(key).get(key).exec();
    expect(results!.map(([, v]) => v)).toEqual(['OK', 'v', 1, null]);
    expect(p.snapshot()).toMatchObject({ connections: 1, resets: 0, dropped: [] });
  });

  it('drops the reply to the XREADGROUP that carried entries; the re-sent read finds them pending', async () => {
    const p = await proxy();
    const stream = fx.keys.stream('lost-reply');
    await fx.redis.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
    const c = client(p.redisUrl);
    const reconnected = next(c, 'reconnecting');
    const dropped = p.dropReplyTo('XREADGROUP', { nonEmpty: true });
    const read = () => c.xreadgroup('GROUP', 'g', 'me', 'COUNT', 10, 'BLOCK', 300, 'STREAMS', stream, '>');
    // An empty read (BLOCK times out with a null reply) is not the one dropped.
    expect(await read()).toBeNull();
    await addEntries(fx.redis, stream, [{ n: '1' }, { n: '2' }]);
    // ioredis re-sends the read on its new connection: the entries are no longer new for it.
    expect(await read()).toBeNull();
    await reconnected;
    expect(await dropped).toMatchObject({ command: 'XREADGROUP', entries: 2 });
    const [count, , , consumers] = (await fx.redis.xpending(stream, 'g')) as [
      number,
      string,
      string,
      string[][],
    ];
    expect(count).toBe(2);
    expect(consumers).toEqual([['me', '2']]);
    expect(p.snapshot().resets).toBe(1);
  });

  it('pairs replies with commands on a pipelined connection', async () => {
    const p = await proxy();
    const key = fx.keys.of('pair');
    await fx.redis.set(key, 'value');
    const dropped = p.dropReplyTo('GET', { nonEmpty: true });
    const missing = fx.keys.of('missing');
    // Three commands in one write: an inline one and two arrays.
    const pipelined = `GET ${missing}\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n*1\r\n$4\r\nPING\r\n`;
    // The empty GET and the PING are answered; the GET with a value is swallowed, the connection reset.
    expect(await rawExchange(p.port, pipelined)).toEqual({ reply: '$-1\r\n+PONG\r\n', error: 'ECONNRESET' });
    expect(await dropped).toMatchObject({ command: 'GET', args: ['GET', key] });
  });

  it('resets every connection: clients see the reset and reconnect', async () => {
    const p = await proxy();
    const c = client(p.redisUrl);
    await c.ping();
    const closed = next(c, 'close');
    expect(p.resetAll()).toBe(1);
    await closed;
    expect(await c.ping()).toBe('PONG');
    expect(p.snapshot()).toMatchObject({ connections: 2, resets: 1 });
  });

  it('refuses new connections while asked to', async () => {
    const p = await proxy();
    p.refuse(true);
    const c = client(p.redisUrl, { lazyConnect: true, retryStrategy: () => null });
    await expect(c.connect()).rejects.toThrow();
    p.refuse(false);
    const d = client(p.redisUrl);
    expect(await d.ping()).toBe('PONG');
    expect(p.snapshot().refused).toBe(1);
  });

  it('delays every chunk by the latency, both ways', async () => {
    const p = await proxy();
    const c = client(p.redisUrl);
    await c.ping();
    p.setLatency(150);
    const { ms } = await timed(() => c.ping());
    expect(ms).toBeGreaterThanOrEqual(290);
    p.setLatency(0);
    expect((await timed(() => c.ping())).ms).toBeLessThan(150);
  });

  it('blackholes: accepts and reads, never answers; lifted, the stale connection is reset', async () => {
    const p = await proxy();
    const c = client(p.redisUrl, { commandTimeout: 300 });
    await c.ping();
    p.blackhole(true);
    await expect(c.ping()).rejects.toThrow(/timed out/);
    const fresh = client(p.redisUrl, { commandTimeout: 300, maxRetriesPerRequest: 0 });
    await expect(fresh.ping()).rejects.toThrow();
    p.blackhole(false);
    await eventually(async () => (await c.ping()) === 'PONG', 5000);
    expect(p.snapshot().resets).toBeGreaterThanOrEqual(1);
  });

  it('limits the bandwidth', async () => {
    const p = await proxy();
    const c = client(p.redisUrl);
    const key = fx.keys.of('big');
    await fx.redis.set(key, 'x'.repeat(100_000));
    p.setBandwidth(100_000);
    const { value, ms } = await timed(() => c.get(key));
    expect(value).toHaveLength(100_000);
    expect(ms).toBeGreaterThanOrEqual(850);
    p.setBandwidth(0);
    expect((await timed(() => c.get(key))).ms).toBeLessThan(300);
  });

  it('in raw mode forwards bytes and refuses protocol faults', async () => {
    const p = await proxy('raw');
    const c = client(p.redisUrl);
    expect(await c.ping()).toBe('PONG');
    expect(() => p.dropReplyTo('XREADGROUP')).toThrow(ProxyModeError);
    p.setLatency(100);
    expect((await timed(() => c.ping())).ms).toBeGreaterThanOrEqual(190);
  });
});

describe('the fault proxy as a process', () => {
  it('takes faults on its control port and reports them', async () => {
    const proc = spawn(
      process.execPath,
      ['test/support/fault-proxy.ts', '--listen', '0', '--target', target],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    try {
      const [line] = (await once(proc.stdout!.setEncoding('utf8'), 'data')) as [string];
      const { port, control } = JSON.parse(line) as { port: number; control: number };
      const ctl = `http://127.0.0.1:${control}`;
      const c = client(`redis://127.0.0.1:${port}`);
      const key = fx.keys.of('standalone');
      await fx.redis.set(key, 'v');
      expect((await postJson(ctl, { fault: 'dropReplyTo', command: 'GET', nonEmpty: true })).status).toBe(
        200,
      );
      expect(await c.get(key)).toBe('v'); // answered on the second connection
      const stats = (await request<ProxyStats>(`${ctl}/stats`)).body;
      expect(stats).toMatchObject({ connections: 2, resets: 1, dropped: [{ command: 'GET' }] });
      expect((await postJson(ctl, { fault: 'nonsense' })).status).toBe(400);
    } finally {
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    }
  });
});
