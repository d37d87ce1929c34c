/**
 * Redis round trips per event at a low rate — the regime where batches hold one entry and every
 * entry pays for its own round trips — for each layout: every stage on its own, and ATLAS_CHAINS.
 * Independent of how loaded the machine is, unlike latencies.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 node load/bench-roundtrips.ts
 *
 * Method: `atlas up` on a fresh prefix with the Redis sink (no Kafka), a seeded churn scenario
 * (nearly every event changes a root's graph) posted one event per POST at BENCH_RT_RATE (20/s)
 * for BENCH_RT_EVENTS (200). Round trips = `total_reads_processed` of Redis (reads from client
 * sockets: one per request a client wrote). The process's idle rate (heartbeats, housekeeping,
 * blocking reads timing out), measured for 5 s before, is subtracted over the run's duration;
 * the door's one script call per event is counted apart. Needs a Redis nobody else uses meanwhile.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { churnScenario, emissionCauses } from '../test/support/e2e-scenario.ts';

const ROOT = resolve(import.meta.dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const RATE = Number(process.env.BENCH_RT_RATE ?? 20);
const EVENTS = Number(process.env.BENCH_RT_EVENTS ?? 200);
const PORT = Number(process.env.BENCH_RT_PORT ?? 17480);
const LAYOUTS = (process.env.BENCH_LAYOUTS ?? 'unchained,chained').split(',');
const CHAIN = process.env.BENCH_CHAIN ?? 'validate+transitive+canonical+serialize';
const TOPIC = 'bench.roundtrips';

const reads = async (redis: Redis): Promise<number> =>
  Number(/^total_reads_processed:(\d+)/m.exec(await redis.info('stats'))?.[1] ?? 0);

async function post(body: unknown): Promise<void> {
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${PORT}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).catch(() => null);
    if (res?.status === 202 || res?.status === 200) return;
    await delay(50);
  }
}

async function layout(name: string, redis: Redis): Promise<string> {
  const prefix = `bench-rt-${randomBytes(3).toString('hex')}`;
  const pool = churnScenario({ seed: 20_261_130, events: EVENTS + 20, roots: 2, tag: prefix });
  const proc: ChildProcess = spawn(process.execPath, [join(ROOT, 'ops', 'cli', 'atlas.ts'), 'up'], {
    env: {
      ...process.env,
      ATLAS_PREFIX: prefix,
      ATLAS_ROOT_SPACE_ID: pool.roots.join(','),
      ATLAS_HTTP_PORT: String(PORT),
      ATLAS_METRICS_PORT: '0',
      KAFKA_BROKER: '',
      KAFKA_TOPIC_CANONICAL: TOPIC,
      LOG_LEVEL: 'warn',
      ATLAS_CHAINS: name === 'chained' ? CHAIN : '',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const sink = `{${prefix}}:out:${TOPIC}`;
  const expected = (n: number) => {
    const causes = emissionCauses(pool.roots, pool.events.slice(0, n));
    return pool.roots.reduce((s, r) => s + causes.get(r)!.length, 0);
  };
  const settle = async (n: number) => {
    const want = expected(n);
    while ((await redis.xlen(sink)) < want) await delay(100);
  };
  try {
    // Warm-up: 20 events through, then the idle rate.
    for (const e of pool.events.slice(0, 20)) await post(e);
    await settle(20);
    await delay(2000);
    const idleFrom = await reads(redis);
    const idleStart = performance.now();
    await delay(5000);
    const idleRate = ((await reads(redis)) - idleFrom - 1) / ((performance.now() - idleStart) / 1000);

    const from = await reads(redis);
    const started = performance.now();
    let polls = 0;
    for (let i = 0; i < EVENTS; i++) {
      const due = started + (i * 1000) / RATE;
      if (due > performance.now()) await delay(due - performance.now());
      await post(pool.events[20 + i]!);
    }
    const want = expected(20 + EVENTS);
    while ((await redis.xlen(sink)) < want) {
      polls++;
      await delay(100);
    }
    const seconds = (performance.now() - started) / 1000;
    const total = (await reads(redis)) - from - polls - 2;
    const stages = total - EVENTS - idleRate * seconds;
    return `${name}: ${(stages / EVENTS).toFixed(2)} round trips per event in the stages (+1 at the door; idle ${idleRate.toFixed(1)}/s subtracted over ${seconds.toFixed(1)} s; ${EVENTS} events at ${RATE}/s, ${want - expected(20)} messages)`;
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
      if (found.length > 0) await redis.del(...found);
      cursor = next;
    } while (cursor !== '0');
  }
}

const redis = new Redis(REDIS_URL);
const lines: string[] = [];
try {
  for (const name of LAYOUTS) lines.push(await layout(name, redis));
} finally {
  redis.disconnect();
}
console.log(lines.join('\n'));
