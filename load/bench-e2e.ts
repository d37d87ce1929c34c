/**
 * End-to-end latency and throughput: HTTP ingest → all six stages → Kafka, against the real
 * Redis and Kafka on loopback.
 *
 *   npm run bench:e2e                       # both layouts, about 3–4 minutes
 *   BENCH_MODES=up npm run bench:e2e        # only `atlas up`
 *
 * Method. Open loop: events are sent at a fixed rate on a schedule (each its own POST /events
 * over keep-alive connections, never waiting for earlier answers), so a slow pipeline cannot
 * slow the sender down and hide its own latency (no coordinated omission). Every event changes
 * exactly one root's canonical graph, so it makes exactly one Kafka message: event j toggles the
 * verified edge root[j mod R] → space[(j / R) mod S] (extend on even passes over the R×S edges,
 * revoke on odd ones; R = S = 32, so the same edge comes back only every 1,024 events and
 * concurrent requests cannot reorder an extend and its revoke). Its meta.cursor names the event;
 * a kafkajs consumer in this process follows the topic and, for each message, reads the cursor
 * and the key. Latency = the moment the consumer hands the message over − the moment just before
 * the POST, both performance.now() of this one process. An event whose message never arrives
 * counts as lost.
 *
 * Per layout (`atlas up` = one process; six = `atlas run <stage>` for each stage):
 * latency at 100 and 1,000 events/s, then the highest sustained rate: stepped up from 1,000
 * (down from it when 1,000 does not hold) until a step fails. A step holds when the sender kept
 * its rate, every event made its message, no request failed, and p99 < 1 s.
 *
 * Settings (environment): REDIS_URL (redis://127.0.0.1:6379), KAFKA_BROKER (127.0.0.1:9092),
 * BENCH_MODES (up,six), BENCH_STEP_S (8: seconds per measured step), BENCH_RATES (the ladder,
 * default 250,500,750,1000,1500,2000,3000,4000,6000). Keys and topics are deleted at the end.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import kafkajs, { type Kafka } from 'kafkajs';
import protobuf from 'protobufjs/minimal.js';
import { ensureTopic } from '../stages/emit/kafka-sink.ts';
import { prepareKafkajs } from '../stages/emit/kafkajs-node24.ts';

const ROOT = resolve(import.meta.dirname, '..');
const ATLAS = join(ROOT, 'ops', 'cli', 'atlas.ts');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KAFKA_BROKER = process.env.KAFKA_BROKER ?? '127.0.0.1:9092';
const MODES = (process.env.BENCH_MODES ?? 'up,six').split(',').filter((m) => m === 'up' || m === 'six');
const STEP_S = Number(process.env.BENCH_STEP_S ?? 8);
const LADDER = (process.env.BENCH_RATES ?? '250,500,750,1000,1500,2000,3000,4000,6000')
  .split(',')
  .map(Number)
  .sort((a, b) => a - b);
const LATENCY_RATES = [100, 1000];
const P99_LIMIT_MS = 1000;
const DRAIN_MS = 20_000;
const ROOTS = 32;
const SPACES = 32;
const STAGES = ['ingest', 'validate', 'transitive', 'canonical', 'serialize', 'emit'];

for (const url of [REDIS_URL, `kafka://${KAFKA_BROKER}`]) {
  const host = new URL(url).hostname;
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '[::1]')
    throw new Error(`bench:e2e runs on loopback only; ${url} is not`);
}

const hex = (first: string, n: number): string => `${first}${n.toString(16).padStart(30, '0')}`;
const roots = Array.from({ length: ROOTS }, (_, i) => hex('b1', i));
const spaces = Array.from({ length: SPACES }, (_, i) => hex('b2', i));

// ---------------------------------------------------------------------------------------------
// Events

/** Event j as a request body (cursor `<run>:<j>`) and the root whose graph it changes. */
function eventBody(run: string, j: number): { body: string; root: string } {
  const root = roots[j % ROOTS]!;
  const space = spaces[Math.floor(j / ROOTS) % SPACES]!;
  const revoke = Math.floor(j / (ROOTS * SPACES)) % 2 === 1;
  const block = 1_000_000 + j;
  const envelope = {
    event_id: `${run}-${j}`,
    event_type: revoke ? 'space.trust_revoked' : 'space.trust_extended',
    source: 'bench-e2e',
    timestamp: Date.now(),
    version: 1,
    payload: {
      source_space_id: root,
      extension: { kind: 'verified', target_space_id: space },
      meta: {
        block_number: block,
        block_timestamp: 1_732_300_000 + j,
        tx_hash: '0x00',
        cursor: `${run}:${j}`,
      },
    },
  };
  return { body: JSON.stringify(envelope), root };
}

/** meta.cursor of a CanonicalGraphUpdated, skipping everything else (fields 1–4 unread). */
function cursorOf(bytes: Uint8Array): string {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 !== 5) {
      reader.skipType(tag & 7);
      continue;
    }
    const meta = protobuf.Reader.create(reader.bytes());
    while (meta.pos < meta.len) {
      const t = meta.uint32();
      if (t >>> 3 === 4) return meta.string();
      meta.skipType(t & 7);
    }
  }
  return '';
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Pipeline {
  url: string;
  procs: ChildProcess[];
  output: () => string;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => res(port));
    });
  });
}

const running = new Set<ChildProcess>();

async function startPipeline(mode: string, env: Record<string, string>): Promise<Pipeline> {
  const port = await freePort();
  const groups = mode === 'up' ? [['up']] : STAGES.map((s) => ['run', s]);
  let log = '';
  const procs = groups.map((args) => {
    const proc = spawn(process.execPath, [ATLAS, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env, ATLAS_HTTP_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer) => {
      log = `${log}${d.toString()}`.slice(-8000);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    return proc;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const dead = procs.find((p) => p.exitCode !== null);
    if (dead) throw new Error(`a pipeline process exited (${dead.exitCode}):\n${log}`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`the door did not answer within 30 s:\n${log}`);
    await delay(100);
  }
  return { url, procs, output: () => log };
}

async function stopPipeline(p: Pipeline): Promise<void> {
  await Promise.all(
    p.procs.map(async (proc) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 12_000);
      await exited;
      clearTimeout(timer);
    }),
  );
}

/** Shared hold on the test broker's e2e lock (test/support/e2e-lock.ts), so an outage test that stops it waits. */
function lockBroker(): ChildProcess | undefined {
  const port = KAFKA_BROKER.split(',')[0]!.split(':').at(-1);
  const file = join(process.env.ATLAS_RUN_DIR ?? join(ROOT, '.run'), `.lock-e2e-kafka-${port}`);
  try {
    mkdirSync(join(file, '..'), { recursive: true });
    const proc = spawn('flock', ['--shared', file, '-c', 'exec cat >/dev/null'], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    proc.on('error', () => undefined);
    return proc;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// One measured step

interface Step {
  mode: string;
  rate: number;
  sent: number;
  sentRate: number;
  /** p99 of (actual send − scheduled send): whether this process kept its schedule. */
  sendLagP99: number;
  failed: number;
  /** What the failed POSTs got, e.g. "12× HTTP 503". */
  failures: string;
  received: number;
  lost: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  holds: boolean;
}

const quantile = (sorted: number[], q: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;

class Bench {
  private next = 0;
  /** cursor → [root, performance.now() just before the POST]; deleted when its message arrives. */
  private readonly inFlight = new Map<string, [string, number]>();
  private latencies: number[] = [];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly run: string;
  private readonly url: string;

  constructor(run: string, url: string) {
    this.run = run;
    this.url = url;
  }

  onMessage(key: Buffer | null, value: Buffer | null, at: number): void {
    if (!value || !key) return;
    const cursor = cursorOf(value);
    const sent = this.inFlight.get(cursor);
    // The first message of each root also comes with the first event of any root: not ours.
    if (!sent || sent[0] !== key.toString('hex')) return;
    this.inFlight.delete(cursor);
    this.latencies.push(at - sent[1]);
  }

  /** Resolves with null when the event was accepted (202), else what went wrong. */
  private post(body: string): Promise<string | null> {
    return new Promise((res) => {
      const req = httpRequest(
        `${this.url}/events`,
        {
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (reply) => {
          reply.resume();
          reply.once('end', () => res(reply.statusCode === 202 ? null : `HTTP ${reply.statusCode}`));
        },
      );
      req.once('error', (err: NodeJS.ErrnoException) => res(err.code ?? err.message));
      req.end(body);
    });
  }

  /** Sends at `rate` for `seconds` on a fixed schedule; then waits for the messages. */
  async step(mode: string, rate: number, seconds: number): Promise<Step> {
    this.latencies = [];
    this.inFlight.clear();
    const total = Math.round(rate * seconds);
    const lags: number[] = [];
    const answers: Array<Promise<string | null>> = [];
    const started = performance.now();
    let i = 0;
    while (i < total) {
      const now = performance.now();
      while (i < total && started + (i * 1000) / rate <= now) {
        const due = started + (i * 1000) / rate;
        const { body, root } = eventBody(this.run, this.next);
        const at = performance.now();
        this.inFlight.set(`${this.run}:${this.next}`, [root, at]);
        lags.push(at - due);
        answers.push(this.post(body));
        this.next++;
        i++;
      }
      const wait = started + (i * 1000) / rate - performance.now();
      await delay(Math.max(0, Math.min(wait, 5)));
    }
    const sentRate = total / ((performance.now() - started) / 1000);
    const failures = (await Promise.all(answers)).filter((why) => why !== null);
    const failed = failures.length;
    const why = new Map<string, number>();
    for (const f of failures) why.set(f!, (why.get(f!) ?? 0) + 1);
    const deadline = performance.now() + DRAIN_MS;
    while (this.inFlight.size > failed && performance.now() < deadline) await delay(50);
    const sorted = [...this.latencies].sort((a, b) => a - b);
    lags.sort((a, b) => a - b);
    const s: Step = {
      mode,
      rate,
      sent: total,
      sentRate,
      sendLagP99: quantile(lags, 0.99),
      failed,
      failures: [...why].map(([k, n]) => `${n}× ${k}`).join(', '),
      received: sorted.length,
      lost: total - sorted.length,
      p50: quantile(sorted, 0.5),
      p95: quantile(sorted, 0.95),
      p99: quantile(sorted, 0.99),
      max: sorted.at(-1) ?? Number.NaN,
      holds: false,
    };
    s.holds = s.lost === 0 && s.failed === 0 && s.sentRate >= rate * 0.95 && s.p99 < P99_LIMIT_MS;
    return s;
  }

  close(): void {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

const fmt = (ms: number): string => (Number.isNaN(ms) ? '-' : ms < 10 ? ms.toFixed(1) : ms.toFixed(0));

function row(s: Step): string {
  return `| ${s.mode === 'up' ? '`atlas up` (1 process)' : 'six processes'} | ${s.rate} | ${s.sentRate.toFixed(0)} | ${s.sent} | ${s.lost}${s.failed ? ` (POST failed: ${s.failures})` : ''} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${fmt(s.p99)} | ${fmt(s.max)} | ${s.holds ? 'holds' : 'does not hold'} |`;
}

/** Every consumer group of every stage stream has read and acknowledged everything. */
async function drained(redis: Redis, prefix: string): Promise<boolean> {
  const links = [
    ['ingest', 'validate'],
    ['validated', 'transitive'],
    ['transitive', 'canonical'],
    ['canonical', 'serialize'],
    ['serialized', 'emit'],
  ];
  for (const [stream, group] of links) {
    const groups = (await redis.xinfo('GROUPS', `{${prefix}}:${stream}`).catch(() => [])) as unknown[][];
    // A stream inside a chain (ATLAS_CHAINS) is never written nor read.
    if (groups.length === 0 && (await redis.xlen(`{${prefix}}:${stream}`)) === 0) continue;
    const g = groups.find((x) => x[x.indexOf('name') + 1] === group);
    if (!g || Number(g[g.indexOf('pending') + 1]) > 0 || Number(g[g.indexOf('lag') + 1] ?? 1) !== 0)
      return false;
  }
  return true;
}

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
    if (found.length > 0) await redis.del(...found);
    cursor = next;
  } while (cursor !== '0');
}

/** A pipeline on a fresh prefix and topic, warmed up, with the following consumer. */
interface Session {
  run: string;
  bench: Bench;
  close(): Promise<void>;
}

async function openSession(mode: string, redis: Redis, kafka: Kafka): Promise<Session> {
  const run = `bench-e2e-${mode}-${randomBytes(4).toString('hex')}`;
  const topic = `atlas-${run}`;
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopic(admin, { topic, partitions: 3 });
  const groupId = `${run}-follower`;
  // Read committed (the default, said out loud): emit publishes in transactions.
  const consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    maxWaitTimeInMs: 20,
    allowAutoTopicCreation: false,
  });
  let pipeline: Pipeline | undefined;
  let bench: Bench | undefined;
  const close = async () => {
    bench?.close();
    await consumer.disconnect().catch(() => undefined);
    if (pipeline) await stopPipeline(pipeline);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    await deletePrefix(redis, run);
  };
  try {
    pipeline = await startPipeline(mode, {
      REDIS_URL,
      KAFKA_BROKER,
      KAFKA_TOPIC_CANONICAL: topic,
      ATLAS_PREFIX: run,
      ATLAS_ROOT_SPACE_ID: roots.join(','),
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
    });
    const b = new Bench(run, pipeline.url);
    bench = b;
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const at = performance.now();
        for (const m of batch.messages) b.onMessage(m.key, m.value, at);
      },
    });
    // Warm-up (JIT, connections, the consumer's assignment): it must deliver before we measure.
    const warm = await b.step(mode, 200, 3);
    if (warm.lost > 0)
      throw new Error(`warm-up: ${warm.lost} of ${warm.sent} events made no message\n${pipeline.output()}`);
    return { run, bench: b, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function benchMode(mode: string, redis: Redis, kafka: Kafka): Promise<Step[]> {
  const steps: Step[] = [];
  let session: Session | undefined;
  /** One step; a step that does not hold leaves a backlog, so the next one gets a fresh pipeline. */
  const measure = async (rate: number): Promise<Step> => {
    session ??= await openSession(mode, redis, kafka);
    const s = await session.bench.step(mode, rate, STEP_S);
    console.log(`  ${row(s)}`);
    steps.push(s);
    const deadline = Date.now() + 10_000;
    let idle = await drained(redis, session.run);
    while (!idle && Date.now() < deadline) {
      await delay(200);
      idle = await drained(redis, session.run);
    }
    if (!s.holds || !idle) {
      await session.close();
      session = undefined;
    }
    return s;
  };
  try {
    for (const rate of LATENCY_RATES) await measure(rate);
    if (steps.find((s) => s.rate === 1000)!.holds) {
      for (const rate of LADDER.filter((r) => r > 1000)) if (!(await measure(rate)).holds) break;
    } else {
      // Bisect the ladder below 1000.
      let lo = -1;
      let hi = LADDER.filter((r) => r < 1000).length;
      const below = LADDER.filter((r) => r < 1000);
      while (hi - lo > 1) {
        const mid = Math.floor((lo + hi) / 2);
        if ((await measure(below[mid]!)).holds) lo = mid;
        else hi = mid;
      }
    }
  } finally {
    await session?.close();
  }
  return steps;
}

async function main(): Promise<void> {
  prepareKafkajs();
  const lock = lockBroker();
  const redis = new Redis(REDIS_URL, { protocol: 2, maxRetriesPerRequest: 3 });
  const kafka = new kafkajs.Kafka({
    clientId: 'bench-e2e',
    brokers: [KAFKA_BROKER],
    logLevel: kafkajs.logLevel.NOTHING,
  });
  const started = Date.now();
  console.log(
    `bench:e2e — ${availableParallelism()} CPUs, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; ` +
      `Redis ${REDIS_URL}, Kafka ${KAFKA_BROKER}; ${ROOTS} roots × ${SPACES} spaces; ${STEP_S} s per step`,
  );
  const all: Step[] = [];
  try {
    for (const mode of MODES) {
      console.log(
        `\n${mode === 'up' ? '`atlas up`: all six stages in one process' : 'six processes, one stage each'}`,
      );
      all.push(...(await benchMode(mode, redis, kafka)));
    }
  } finally {
    redis.disconnect();
    lock?.stdin?.end();
  }
  const header = [
    '| layout | target ev/s | sent ev/s | events | lost | p50 ms | p95 ms | p99 ms | max ms | p99 < 1 s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  console.log(
    '\nIngest → Kafka latency (open loop; from just before the POST to the consumer receiving the message)\n',
  );
  console.log([...header, ...all.filter((s) => LATENCY_RATES.includes(s.rate)).map(row)].join('\n'));
  console.log('\nHighest sustained rate (p99 < 1 s, every event delivered, sender on schedule)\n');
  console.log(
    [...header, ...all.filter((s) => !LATENCY_RATES.includes(s.rate) || s.rate === 1000).map(row)].join('\n'),
  );
  for (const mode of MODES) {
    const held = all.filter((s) => s.mode === mode && s.holds).map((s) => s.rate);
    const failed = all.filter((s) => s.mode === mode && !s.holds).map((s) => s.rate);
    const best = held.length ? Math.max(...held) : 0;
    const above = failed.filter((r) => r > best);
    console.log(
      `${mode === 'up' ? '`atlas up`' : 'six processes'}: sustains ${best || 'none of the tried rates'}${best ? ' events/s' : ''}` +
        (above.length ? ` (${Math.min(...above)} events/s does not hold)` : ' (the highest rate tried)'),
    );
  }
  console.log(`\n(${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

const cleanupOnSignal = () => {
  for (const p of running) p.kill('SIGKILL');
  process.exit(130);
};
process.once('SIGINT', cleanupOnSignal);
process.once('SIGTERM', cleanupOnSignal);

await main().catch((err: unknown) => {
  console.error(err);
  for (const p of running) p.kill('SIGKILL');
  process.exitCode = 1;
});
