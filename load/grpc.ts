/**
 * Publishing over gRPC beside the HTTP door, in the same run against the same door process:
 *
 *   REDIS_URL=redis://127.0.0.1:6379 node load/grpc.ts
 *
 * Starts `node ops/cli/atlas.ts run ingest` (HTTP and gRPC on free loopback ports, a fresh
 * ATLAS_PREFIX, ATLAS_HIGH_WATER high enough that backpressure never answers), then runs each
 * scenario for LOAD_DURATION_S after LOAD_WARMUP_S, in LOAD_ROUNDS rounds:
 *   http-single  autocannon, POST /events, one JSON envelope per request (LOAD_CONNECTIONS)
 *   http-batch   autocannon, POST /events/batch, LOAD_BATCH_EVENTS envelopes per request
 *   grpc-unary   Publish, LOAD_CONNECTIONS calls in flight
 *   grpc-stream  PublishStream, LOAD_STREAMS streams each sending LOAD_BATCH_EVENTS events per call
 *   grpc-bidi    StreamEvents, LOAD_STREAMS streams each keeping LOAD_WINDOW events unacknowledged
 * Every event is a space.trust_extended envelope with a unique event_id (nothing is a
 * duplicate). Prints accepted events per second and latency (per request or call; per event
 * for bidi). The load generators run in this process: its CPU competes with the door's on a
 * small machine, for every scenario alike. The prefix's keys are deleted at the end.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import type { atlas } from '../proto/gen/bus.js';
import { BusClient } from '../stages/grpc/service.ts';

const ROOT = resolve(import.meta.dirname, '..');
const env = (name: string, def: number) => Number(process.env[name] ?? def);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROUNDS = env('LOAD_ROUNDS', 2);
const DURATION_S = env('LOAD_DURATION_S', 6);
const WARMUP_S = env('LOAD_WARMUP_S', 1);
const CONNECTIONS = env('LOAD_CONNECTIONS', 16);
const STREAMS = env('LOAD_STREAMS', 4);
const BATCH = env('LOAD_BATCH_EVENTS', 100);
const WINDOW = env('LOAD_WINDOW', 256);

// biome-ignore lint/suspicious/noExplicitAny: the generic client's methods are untyped
type Client = Record<string, any> & { close(): void };
type Envelope = atlas.bus.Envelope.$Properties;

const PAYLOAD = JSON.stringify({
  source_space_id: '25000000000000000000000000000001',
  extension: { kind: 'verified', target_space_id: '6f000000000000000000000000000003' },
  meta: { block_number: 1006, block_timestamp: 1732300072, tx_hash: `0x${'0'.repeat(63)}7`, cursor: 'load' },
});
let counter = 0;
const run = randomUUID().slice(0, 8);
const nextId = () => `${run}-${(counter++).toString(36)}`;
const envelope = (): Envelope => ({
  eventId: nextId(),
  eventType: 'space.trust_extended',
  source: 'load',
  timestamp: 1732300006000,
  version: 1,
  payloadJson: PAYLOAD,
});
const jsonEnvelope = () =>
  `{"event_id":"${nextId()}","event_type":"space.trust_extended","source":"load","timestamp":1732300006000,"version":1,"payload":${PAYLOAD}}`;

interface Measured {
  events: number;
  seconds: number;
  latenciesMs: number[];
  errors: number;
}

/** Runs `work` (which loops until `until`) for warm-up, then measured. */
async function timed(work: (until: number, m: Measured) => Promise<void>): Promise<Measured> {
  await work(performance.now() + WARMUP_S * 1000, { events: 0, seconds: 0, latenciesMs: [], errors: 0 });
  const m: Measured = { events: 0, seconds: 0, latenciesMs: [], errors: 0 };
  const started = performance.now();
  await work(started + DURATION_S * 1000, m);
  m.seconds = (performance.now() - started) / 1000;
  return m;
}

async function httpScenario(url: string, batch: boolean): Promise<Measured> {
  const { default: autocannon } = await import('autocannon');
  const body = batch ? () => `[${Array.from({ length: BATCH }, jsonEnvelope).join(',')}]` : jsonEnvelope;
  return timed(async (until, m) => {
    const instance = autocannon({
      url,
      connections: batch ? Math.max(1, CONNECTIONS / 2) : CONNECTIONS,
      duration: Math.max(1, Math.round((until - performance.now()) / 1000)),
      timeout: 10,
      requests: [
        {
          method: 'POST',
          path: batch ? '/events/batch' : '/events',
          headers: { 'content-type': 'application/json' },
          setupRequest: (req: { body?: string | Buffer }) => {
            req.body = body();
            return req;
          },
        },
      ],
    });
    instance.on('response', (_c: unknown, status: number, _b: number, ms: number) => {
      if (status !== 202) return void m.errors++;
      m.events += batch ? BATCH : 1;
      m.latenciesMs.push(ms);
    });
    await instance;
  });
}

function publishOne(client: Client, e: Envelope): Promise<void> {
  return new Promise((ok, fail) => client.publish(e, (err: ServiceError | null) => (err ? fail(err) : ok())));
}

async function grpcUnary(client: Client): Promise<Measured> {
  return timed(async (until, m) => {
    const lane = async () => {
      while (performance.now() < until) {
        const t = performance.now();
        await publishOne(client, envelope()).then(
          () => {
            m.events++;
            m.latenciesMs.push(performance.now() - t);
          },
          () => m.errors++,
        );
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, lane));
  });
}

async function grpcStream(client: Client): Promise<Measured> {
  return timed(async (until, m) => {
    const lane = async () => {
      while (performance.now() < until) {
        const t = performance.now();
        const acks = await new Promise<atlas.bus.PublishAck.$Properties[]>((ok, fail) => {
          const call = client.publishStream((err: ServiceError | null, r: atlas.bus.PublishAcks) =>
            err ? fail(err) : ok(r.acks),
          );
          for (let i = 0; i < BATCH; i++) call.write(envelope());
          call.end();
        }).catch(() => []);
        const good = acks.filter((a) => !a.error).length;
        m.events += good;
        m.errors += BATCH - good;
        m.latenciesMs.push(performance.now() - t);
      }
    };
    await Promise.all(Array.from({ length: STREAMS }, lane));
  });
}

async function grpcBidi(client: Client): Promise<Measured> {
  return timed(async (until, m) => {
    const lane = () =>
      new Promise<void>((done) => {
        const call = client.streamEvents();
        const sentAt = new Map<string, number>();
        const send = () => {
          while (sentAt.size < WINDOW && performance.now() < until) {
            const e = envelope();
            sentAt.set(e.eventId as string, performance.now());
            call.write({ publish: e });
          }
          if (sentAt.size === 0) call.end();
        };
        call.on('data', (msg: atlas.bus.ServerMessage) => {
          const ack = msg.published;
          if (!ack) return;
          const t = sentAt.get(ack.eventId ?? '');
          sentAt.delete(ack.eventId ?? '');
          if (ack.error) m.errors++;
          else {
            m.events++;
            if (t !== undefined) m.latenciesMs.push(performance.now() - t);
          }
          send();
        });
        call.on('end', () => done());
        call.on('error', () => done());
        send();
      });
    await Promise.all(Array.from({ length: STREAMS }, lane));
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! : Number.NaN;
}

function row(name: string, m: Measured): string {
  const sorted = [...m.latenciesMs].sort((a, b) => a - b);
  const rate = Math.round(m.events / m.seconds);
  return `| ${name} | ${rate} | ${percentile(sorted, 0.5).toFixed(2)} | ${percentile(sorted, 0.99).toFixed(2)} | ${m.errors} |`;
}

async function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

async function startDoor(prefix: string, httpPort: number, grpcPort: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['ops/cli/atlas.ts', 'run', 'ingest'], {
    cwd: ROOT,
    env: {
      ...process.env,
      REDIS_URL,
      ATLAS_PREFIX: prefix,
      ATLAS_HTTP_PORT: String(httpPort),
      ATLAS_GRPC_PORT: String(grpcPort),
      ATLAS_METRICS_PORT: String(await freePort()),
      ATLAS_HIGH_WATER: '1000000000',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; i < 200; i++) {
    const up = await fetch(`http://127.0.0.1:${httpPort}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('the door did not start');
}

async function deletePrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}

async function main(): Promise<void> {
  const prefix = `load-grpc-${run}`;
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const door = await startDoor(prefix, httpPort, grpcPort);
  const client = new BusClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure()) as unknown as Client;
  const url = `http://127.0.0.1:${httpPort}`;
  try {
    console.log(
      `gRPC and HTTP publish, ${ROUNDS} rounds x ${DURATION_S}s (warm-up ${WARMUP_S}s); ${CONNECTIONS} connections/calls, ${STREAMS} streams, batch ${BATCH}, bidi window ${WINDOW}`,
    );
    console.log('\n| scenario | events/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|');
    for (let round = 0; round < ROUNDS; round++) {
      console.log(row('http-single', await httpScenario(url, false)));
      console.log(row('http-batch', await httpScenario(url, true)));
      console.log(row('grpc-unary', await grpcUnary(client)));
      console.log(row('grpc-stream', await grpcStream(client)));
      console.log(row('grpc-bidi', await grpcBidi(client)));
    }
    console.log('\nlatency: per request (http), per call (grpc-unary, grpc-stream), per event (grpc-bidi)');
  } finally {
    client.close();
    door.kill('SIGTERM');
    await new Promise((r) => door.once('exit', r));
    await deletePrefix(prefix);
  }
}

await main();
