/**
 * Slow clients against the real door: raw sockets that trickle headers or a body, or say
 * nothing at all, must be cut off by the door's timeouts, and must not stop it answering.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../support/config.ts';
import { type Door, request, startDoor } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('slow');

interface SlowClient {
  /** Resolves when the door closes the connection: after how long, and what it sent. */
  closed: Promise<{ ms: number; received: string }>;
  stop(): void;
}

type Mode = 'headers' | 'body' | 'silent';

/** A client that opens a connection and then sends one byte every `everyMs` (or nothing). */
function slowClient(url: string, mode: Mode, everyMs = 100): SlowClient {
  const { hostname, port } = new URL(url);
  const socket: Socket = connect(Number(port), hostname);
  const started = performance.now();
  let received = '';
  let timer: NodeJS.Timeout | undefined;
  socket.on('data', (d) => {
    received += d.toString();
  });
  socket.on('error', () => {});
  socket.on('connect', () => {
    const head = 'POST /events HTTP/1.1\r\nhost: door\r\ncontent-type: application/json\r\n';
    if (mode === 'silent') return;
    socket.write(mode === 'headers' ? head : `${head}content-length: 100000\r\n\r\n`);
    const drip = mode === 'headers' ? 'x' : ' ';
    timer = setInterval(() => socket.write(drip), everyMs);
  });
  const closed = new Promise<{ ms: number; received: string }>((resolve) =>
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ ms: performance.now() - started, received });
    }),
  );
  return {
    closed,
    stop: () => {
      clearInterval(timer);
      socket.destroy();
    },
  };
}

describe('the door and slow clients', () => {
  let door: Door;
  beforeAll(async () => {
    door = await startDoor(
      testConfig(fx.prefix, {
        ATLAS_HTTP_HEADERS_TIMEOUT_MS: 500,
        ATLAS_HTTP_REQUEST_TIMEOUT_MS: 1000,
        ATLAS_HTTP_CONNECTION_TIMEOUT_MS: 800,
        ATLAS_HTTP_MAX_CONNECTIONS: 400,
      }),
    );
  });
  afterAll(() => door.close());

  it('cuts a client that trickles its headers once the headers timeout is up', async () => {
    const client = slowClient(door.url, 'headers');
    const { ms, received } = await client.closed;
    expect(ms).toBeGreaterThanOrEqual(450);
    expect(ms).toBeLessThan(4000); // node's default: 60 s
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('cuts a client that trickles its body once the request timeout is up', async () => {
    const client = slowClient(door.url, 'body');
    const { ms, received } = await client.closed;
    expect(ms).toBeGreaterThanOrEqual(950);
    expect(ms).toBeLessThan(5000); // node's default: 300 s
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('closes a connection that sends nothing', async () => {
    const { ms } = await slowClient(door.url, 'silent').closed;
    expect(ms).toBeLessThan(4000);
  });

  it('answers /health quickly with 300 slow clients connected, and cuts them all', async () => {
    const clients = Array.from({ length: 300 }, (_, i) =>
      slowClient(door.url, (['headers', 'body', 'silent'] as const)[i % 3]!),
    );
    try {
      await new Promise((r) => setTimeout(r, 200));
      for (let i = 0; i < 3; i++) {
        const health = await request(`${door.url}/health`);
        expect(health.status).toBe(200);
        expect(health.ms).toBeLessThan(2000); // generous: the suite shares a loaded machine
      }
      const closed = await Promise.all(clients.map((c) => c.closed));
      expect(Math.max(...closed.map((c) => c.ms))).toBeLessThan(6000); // node's own limit is 60 s
      expect((await request(`${door.url}/health`)).status).toBe(200);
    } finally {
      for (const c of clients) c.stop();
    }
  });
});

describe('the connection cap', () => {
  it('closes connections over ATLAS_HTTP_MAX_CONNECTIONS at once, and serves again when they go', async () => {
    const door = await startDoor(
      testConfig(fx.prefix, { ATLAS_HTTP_MAX_CONNECTIONS: 20, ATLAS_HTTP_CONNECTION_TIMEOUT_MS: 4000 }),
    );
    const holders = Array.from({ length: 20 }, () => slowClient(door.url, 'silent'));
    try {
      await new Promise((r) => setTimeout(r, 200));
      const extra = await slowClient(door.url, 'silent').closed;
      expect(extra.ms).toBeLessThan(2000); // the held ones would last 4 s
      for (const h of holders) h.stop();
      await Promise.all(holders.map((h) => h.closed));
      expect((await request(`${door.url}/health`)).status).toBe(200);
    } finally {
      for (const h of holders) h.stop();
      await door.close();
    }
  });
});
