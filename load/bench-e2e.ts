/**
 * End-to-end latency and throughput: HTTP ingest → all six stages → Kafka, against the real
 * Redis and Kafka on loopback, beside the bare baseline (load/bare-pipeline.ts: the same six
 * stream hops with no stage logic, then Kafka with emit's producer settings) in the same run, so
 * every figure is also a ratio to what this design reaches on this machine.
 *
 *   npm run bench:e2e                          # up and six, single and batched POSTs, ~15 minutes
 *   npm run bench:e2e -- --quick               # `atlas up` only, 4 s steps: a few minutes
 *   npm run bench:e2e -- --quick --json        # also one JSON document at the end (compare runs)
 *   BENCH_MODES=six BENCH_POSTS=batch npm run bench:e2e
 *   BENCH_MODES=up,chained,six npm run bench:e2e   # chained: `atlas up` with ATLAS_CHAINS=BENCH_CHAIN
 *
 * Method. Open loop: events are sent at a fixed rate on a schedule, never waiting for earlier
 * answers, so a slow pipeline cannot slow the sender down and hide its own latency (no
 * coordinated omission). Single POSTs: each event its own POST /events over keep-alive
 * connections. Batched POSTs: each event handed to the TypeScript client (clients/typescript,
 * AtlasProducer: up to BENCH_BATCH events per POST /events/batch, one request in flight, 5 ms
 * linger), one client per quarter of the roots so each root's events stay in order; its
 * latency includes the client's queueing, as a real producer's would. Every event changes
 * exactly one root's canonical graph, so it makes exactly one Kafka message: event j toggles the
 * verified edge root[j mod R] → space[(j / R) mod S] (extend on even passes over the R×S edges,
 * revoke on odd ones; R = S = 32, so the same edge comes back only every 1,024 events and
 * concurrent requests cannot reorder an extend and its revoke). Its meta.cursor names the event;
 * a kafkajs consumer in this process follows the topic and, for each message, reads the cursor
 * and the key. Latency = the moment the consumer hands the message over − the moment just before
 * the event was sent, both performance.now() of this one process. An event whose message has
 * not arrived 20 s after the step's last send counts as `late` (behind, not lost: the step
 * does not hold).
 *
 * Per layout (`atlas up` = one process; chained = `atlas up` with ATLAS_CHAINS; six = `atlas run <stage>` for each stage) and kind of
 * POST, the pipeline and then the bare baseline in the same layout: latency at 100 and 1,000
 * events/s, then the highest sustained rate: stepped up from 1,000 (down from it when 1,000
 * does not hold) until a step fails. A step holds when the sender kept its rate, every event
 * made its message, no request failed, and p99 < 1 s. The bare baseline's entries are as large
 * as the pipeline's, measured on its streams and messages in the same run.
 *
 * Settings (environment): REDIS_URL (redis://127.0.0.1:6379), KAFKA_BROKER (127.0.0.1:9092),
 * BENCH_MODES (up,six; --quick: up; also chained), BENCH_CHAIN (the chained layout's chain,
 * validate+transitive+canonical+serialize; no bare baseline of its own: its ratios are to the
 * bare six hops of `up`), BENCH_POSTS (single,batch), BENCH_BARE (1; 0 = no bare
 * baseline), BENCH_BATCH (100), BENCH_STEP_S (8; --quick: 4), BENCH_RATES (the ladder, default
 * 250,500,750,1000,1500,2000,3000,4000,5000,6000,8000,10000,12000; --quick:
 * 250,500,1000,2000,4000,6000,8000,10000), BENCH_CPU_PROF (a directory: every pipeline process runs under
 * --cpu-prof and writes its profile there when stopped), BENCH_COMPARE_DIR (another checkout, e.g.
 * the commit before a change, with its node_modules and proto/gen: its pipeline is measured too,
 * between this one and the bare baseline, for before and after in one run). Keys and topics are
 * deleted at the end.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import kafkajs, { type Kafka } from 'kafkajs';
import protobuf from 'protobufjs/minimal.js';
import { type AtlasEvent, AtlasProducer } from '../clients/typescript/index.ts';
import { ensureTopic } from '../stages/emit/kafka-sink.ts';
import { prepareKafkajs } from '../stages/emit/kafkajs-node24.ts';
import type { Envelope } from '../stages/ingest/envelope.ts';

const ROOT = resolve(import.meta.dirname, '..');
const ATLAS = join(ROOT, 'ops', 'cli', 'atlas.ts');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KAFKA_BROKER = process.env.KAFKA_BROKER ?? '127.0.0.1:9092';
const BARE_SCRIPT = join(ROOT, 'load', 'bare-pipeline.ts');
const QUICK = process.argv.includes('--quick');
const JSON_OUT = process.argv.includes('--json');
const LAYOUTS = (process.env.BENCH_MODES ?? (QUICK ? 'up' : 'up,six'))
  .split(',')
  .filter((m): m is Layout => m === 'up' || m === 'chained' || m === 'six');
/** The chain of the `chained` layout (`atlas up` with ATLAS_CHAINS set to it). */
const CHAIN = process.env.BENCH_CHAIN ?? 'validate+transitive+canonical+serialize';
const POSTS = (process.env.BENCH_POSTS ?? 'single,batch')
  .split(',')
  .filter((m): m is Posts => m === 'single' || m === 'batch');
/** Another checkout (e.g. the commit before a change, with node_modules and proto/gen): its pipeline too. */
const COMPARE_DIR = process.env.BENCH_COMPARE_DIR ? resolve(process.env.BENCH_COMPARE_DIR) : undefined;
const SYSTEMS: System[] = [
  'pipeline',
  ...(COMPARE_DIR ? (['compare'] as const) : []),
  ...(process.env.BENCH_BARE === '0' ? [] : (['bare'] as const)),
];
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
/** Batched POSTs: clients, each with a quarter of the roots; how long an event waits for others. */
const PRODUCERS = 4;
const LINGER_MS = 5;
const STEP_S = Number(process.env.BENCH_STEP_S ?? (QUICK ? 4 : 8));
const LADDER = (
  process.env.BENCH_RATES ??
  (QUICK
    ? '250,500,1000,2000,4000,6000,8000,10000'
    : '250,500,750,1000,1500,2000,3000,4000,5000,6000,8000,10000,12000')
)
  .split(',')
  .map(Number)
  .sort((a, b) => a - b);
const LATENCY_RATES = QUICK ? [1000] : [100, 1000];
/** A directory: the pipeline's processes run under --cpu-prof and leave their profiles there. */
const CPU_PROF = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
const P99_LIMIT_MS = 1000;
const DRAIN_MS = 20_000;
const ROOTS = 32;
const SPACES = 32;
const STAGES = ['ingest', 'validate', 'transitive', 'canonical', 'serialize', 'emit'];

type Layout = 'up' | 'chained' | 'six';
type Posts = 'single' | 'batch';
type System = 'pipeline' | 'compare' | 'bare';
/** What one series of steps measures. */
interface Target {
  system: System;
  layout: Layout;
  posts: Posts;
}
const label = (t: Target): string =>
  `${t.system === 'pipeline' ? '' : `${t.system} `}${LAYOUT_NAMES[t.layout]}, ${t.posts === 'single' ? 'single POSTs' : `POSTs of ${BATCH}`}`;
const LAYOUT_NAMES: Record<Layout, string> = {
  up: 'one process',
  chained: 'one process chained',
  six: 'six processes',
};
const sameTarget = (a: Target, b: Target): boolean =>
  a.system === b.system && a.layout === b.layout && a.posts === b.posts;

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

/** Event j (cursor `<run>:<j>`) and the root whose graph it changes. */
function eventOf(run: string, j: number): { envelope: Envelope; root: string } {
  const root = roots[j % ROOTS]!;
  const space = spaces[Math.floor(j / ROOTS) % SPACES]!;
  const revoke = Math.floor(j / (ROOTS * SPACES)) % 2 === 1;
  const block = 1_000_000 + j;
  const envelope: Envelope = {
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
  return { envelope, root };
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

async function startPipeline(t: Target, env: Record<string, string>): Promise<Pipeline> {
  const port = await freePort();
  const script =
    t.system === 'bare'
      ? BARE_SCRIPT
      : t.system === 'compare'
        ? join(COMPARE_DIR!, 'ops', 'cli', 'atlas.ts')
        : ATLAS;
  const all = t.system === 'bare' ? [] : ['up'];
  const one = (stage: string) => (t.system === 'bare' ? [stage] : ['run', stage]);
  const groups = t.layout === 'six' ? STAGES.map(one) : [all];
  let log = '';
  const profile = CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : [];
  const procs = groups.map((args) => {
    const proc = spawn(process.execPath, [...profile, script, ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        ...env,
        ATLAS_HTTP_PORT: String(port),
        ATLAS_CHAINS: t.layout === 'chained' ? CHAIN : '',
      },
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

interface Step extends Target {
  rate: number;
  sent: number;
  sentRate: number;
  /** p99 of (actual send − scheduled send): whether this process kept its schedule. */
  sendLagP99: number;
  failed: number;
  /** What the failed sends got, e.g. "12× HTTP 503". */
  failures: string;
  received: number;
  late: number;
  /**
   * Messages received per second from the first send to the last message: what the system
   * delivered, also when it fell behind (then it is its capacity, the steadier figure on a busy machine).
   */
  deliveredRate: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  holds: boolean;
  /**
   * Where the latency goes: per stage stream, p50/p99 ms from the door receiving an event to its
   * entry being appended there (the entry id's time − its carried received_at), over the step's
   * entries still in the stream (retention may have trimmed acknowledged ones). The Kafka figure
   * (p50/p99 above) follows the last of them.
   */
  hops?: Record<string, { p50: number; p99: number }>;
  /**
   * p50/p99 ms from a message's Kafka timestamp (emit's producer, as it builds the batch) to this
   * process reading it: the transaction's produce and commit, and the read-committed fetch.
   */
  kafkaRead?: { p50: number; p99: number };
  /** CPU µs per event of the system's processes, and of Redis, over the step and its drain. */
  cpuUsPerEvent?: number;
  redisUsPerEvent?: number;
}

const quantile = (sorted: number[], q: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;

class Bench {
  private next = 0;
  /** cursor → [root, performance.now() just before the send]; deleted when its message arrives. */
  private readonly inFlight = new Map<string, [string, number]>();
  private latencies: number[] = [];
  /** Per message: ms from its Kafka timestamp (set by emit's producer) to its arrival here. */
  private readLags: number[] = [];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly producers: AtlasProducer[];
  private readonly run: string;
  private readonly url: string;
  /** Bytes of the message values seen, for the bare baseline's message size. */
  private valueBytes = 0;
  private values = 0;
  /** When the last of our messages arrived. */
  private lastAt = 0;

  constructor(run: string, url: string) {
    this.run = run;
    this.url = url;
    // One attempt: a refused batch counts as failed, as a refused single POST does.
    this.producers = Array.from(
      { length: PRODUCERS },
      () => new AtlasProducer({ url, maxBatch: BATCH, flushIntervalMs: LINGER_MS, maxAttempts: 1 }),
    );
  }

  onMessage(key: Buffer | null, value: Buffer | null, at: number, createdAt: number): void {
    if (!value || !key) return;
    this.valueBytes += value.length;
    this.values++;
    const cursor = cursorOf(value);
    const sent = this.inFlight.get(cursor);
    // The first message of each root also comes with the first event of any root: not ours.
    if (!sent || sent[0] !== key.toString('hex')) return;
    this.inFlight.delete(cursor);
    this.latencies.push(at - sent[1]);
    this.readLags.push(Date.now() - createdAt);
    this.lastAt = at;
  }

  meanValueBytes(): number {
    return this.values > 0 ? Math.round(this.valueBytes / this.values) : 0;
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

  /** Hands event j to the client of its root's quarter. */
  private send(envelope: Envelope, j: number): Promise<string | null> {
    const producer = this.producers[(j % ROOTS) % PRODUCERS]!;
    return producer.send(envelope as AtlasEvent).then(
      (a) => (a.duplicate ? 'duplicate' : null),
      (err: unknown) => (err instanceof Error ? err.message.slice(0, 60) : String(err)),
    );
  }

  /** Sends at `rate` for `seconds` on a fixed schedule; then waits for the messages. */
  async step(target: Target, rate: number, seconds: number): Promise<Step> {
    this.latencies = [];
    this.readLags = [];
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
        const { envelope, root } = eventOf(this.run, this.next);
        const at = performance.now();
        this.inFlight.set(`${this.run}:${this.next}`, [root, at]);
        lags.push(at - due);
        answers.push(
          target.posts === 'single' ? this.post(JSON.stringify(envelope)) : this.send(envelope, this.next),
        );
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
      ...target,
      rate,
      sent: total,
      sentRate,
      sendLagP99: quantile(lags, 0.99),
      failed,
      failures: [...why].map(([k, n]) => `${n}× ${k}`).join(', '),
      received: sorted.length,
      late: total - sorted.length,
      deliveredRate: sorted.length > 0 ? sorted.length / ((this.lastAt - started) / 1000) : 0,
      p50: quantile(sorted, 0.5),
      p95: quantile(sorted, 0.95),
      p99: quantile(sorted, 0.99),
      max: sorted.at(-1) ?? Number.NaN,
      holds: false,
    };
    const readLags = [...this.readLags].sort((a, b) => a - b);
    if (readLags.length > 0) s.kafkaRead = { p50: quantile(readLags, 0.5), p99: quantile(readLags, 0.99) };
    s.holds = s.late === 0 && s.failed === 0 && s.sentRate >= rate * 0.95 && s.p99 < P99_LIMIT_MS;
    return s;
  }

  async close(): Promise<void> {
    this.agent.destroy();
    await Promise.all(this.producers.map((p) => p.close().catch(() => undefined)));
  }
}

// ---------------------------------------------------------------------------------------------

const fmt = (ms: number): string => (Number.isNaN(ms) ? '-' : ms < 10 ? ms.toFixed(1) : ms.toFixed(0));

function row(s: Step): string {
  return `| ${label(s)} | ${s.rate} | ${s.sentRate.toFixed(0)} | ${s.sent} | ${s.late}${s.failed ? ` (sends failed: ${s.failures})` : ''} | ${s.deliveredRate.toFixed(0)} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${fmt(s.p99)} | ${fmt(s.max)} | ${s.cpuUsPerEvent ?? '-'} | ${s.redisUsPerEvent ?? '-'} | ${s.holds ? 'holds' : 'does not hold'} |`;
}

const LINKS = [
  ['ingest', 'validate'],
  ['validated', 'transitive'],
  ['transitive', 'canonical'],
  ['canonical', 'serialize'],
  ['serialized', 'emit'],
];

/** Every consumer group of every stage stream has read and acknowledged everything. */
async function drained(redis: Redis, prefix: string): Promise<boolean> {
  for (const [stream, group] of LINKS) {
    const groups = (await redis.xinfo('GROUPS', `{${prefix}}:${stream}`).catch(() => [])) as unknown[][];
    // A stream inside a chain (ATLAS_CHAINS) is never written nor read.
    if (groups.length === 0 && (await redis.xlen(`{${prefix}}:${stream}`)) === 0) continue;
    const g = groups.find((x) => x[x.indexOf('name') + 1] === group);
    if (!g || Number(g[g.indexOf('pending') + 1]) > 0 || Number(g[g.indexOf('lag') + 1] ?? 1) !== 0)
      return false;
  }
  return true;
}

/** Mean bytes (field names and values) of the latest entries of each stage stream. */
async function entrySizes(redis: Redis, prefix: string): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  for (const [stream] of LINKS) {
    const entries = (await redis.xrevrangeBuffer(`{${prefix}}:${stream}`, '+', '-', 'COUNT', 200)) as Array<
      [Buffer, Buffer[]]
    >;
    if (entries.length === 0) continue;
    let bytes = 0;
    for (const [, fields] of entries) for (const f of fields) bytes += f.length;
    sizes[stream!] = Math.round(bytes / entries.length);
  }
  return sizes;
}

/** Per stage stream: ms from the door's received_at to the append, over the entries since `since`. */
async function hopLatencies(
  redis: Redis,
  prefix: string,
  since: number,
): Promise<Record<string, { p50: number; p99: number }>> {
  const out: Record<string, { p50: number; p99: number }> = {};
  for (const stream of ['ingest', ...LINKS.slice(1).map(([s]) => s!)]) {
    const entries = (await redis.xrange(`{${prefix}}:${stream}`, String(since), '+')) as Array<
      [string, string[]]
    >;
    const waits: number[] = [];
    for (const [id, fields] of entries) {
      const at = fields.indexOf('received_at');
      if (at >= 0 && at % 2 === 0) waits.push(Number(id.split('-')[0]) - Number(fields[at + 1]));
    }
    if (waits.length === 0) continue;
    waits.sort((a, b) => a - b);
    out[stream] = { p50: quantile(waits, 0.5), p99: quantile(waits, 0.99) };
  }
  return out;
}

const hopsText = (hops: Record<string, { p50: number; p99: number }>): string =>
  `door → stream append, p50/p99 ms: ${
    Object.entries(hops)
      .map(([s, q]) => `${s} ${q.p50}/${q.p99}`)
      .join(', ') || '(no stage streams: chained)'
  }`;

async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
    if (found.length > 0) await redis.del(...found);
    cursor = next;
  } while (cursor !== '0');
}

/** Entry and message sizes measured on the pipeline, per layout: the bare baseline copies them. */
const measuredSizes = new Map<Layout, Record<string, number>>();

/** A pipeline on a fresh prefix and topic, warmed up, with the following consumer. */
interface Session {
  run: string;
  bench: Bench;
  /** The output of the pipeline's processes when one of them has exited, else null. */
  exited(): string | null;
  /** CPU seconds the pipeline's processes have used so far (user + system). */
  cpuS(): number;
  close(): Promise<void>;
}

async function openSession(t: Target, redis: Redis, kafka: Kafka): Promise<Session> {
  const run = `bench-e2e-${t.system}-${t.layout}-${randomBytes(4).toString('hex')}`;
  const topic = `atlas-${run}`;
  const admin = kafka.admin();
  await admin.connect();
  // On a loaded machine the broker can take longer to elect leaders than kafkajs waits.
  for (let attempt = 1; ; attempt++) {
    try {
      await ensureTopic(admin, { topic, partitions: 3 });
      break;
    } catch (err) {
      if (attempt === 3) throw err;
      await delay(2000);
    }
  }
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
  const measure = async () => {
    if (t.system !== 'pipeline' || !bench) return;
    const sizes = await entrySizes(redis, run);
    const kafkaBytes = bench.meanValueBytes();
    if (Object.keys(sizes).length > 0 && kafkaBytes > 0)
      measuredSizes.set(t.layout, { ...sizes, kafka: kafkaBytes });
  };
  const close = async () => {
    await measure().catch(() => undefined);
    await bench?.close();
    await consumer.disconnect().catch(() => undefined);
    if (pipeline) await stopPipeline(pipeline);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    await deletePrefix(redis, run);
  };
  try {
    const sizes = measuredSizes.get(t.layout);
    pipeline = await startPipeline(t, {
      REDIS_URL,
      KAFKA_BROKER,
      KAFKA_TOPIC_CANONICAL: topic,
      ATLAS_PREFIX: run,
      ATLAS_ROOT_SPACE_ID: roots.join(','),
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      ...(sizes
        ? {
            BARE_SIZES: Object.entries(sizes)
              .map(([k, v]) => `${k}=${v}`)
              .join(','),
          }
        : {}),
    });
    const b = new Bench(run, pipeline.url);
    bench = b;
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const at = performance.now();
        for (const m of batch.messages) b.onMessage(m.key, m.value, at, Number(m.timestamp));
      },
    });
    // Warm-up (JIT, connections, the consumer's assignment): it must deliver before we measure.
    const warm = await b.step(t, 200, 3);
    if (warm.late > 0)
      throw new Error(`warm-up: ${warm.late} of ${warm.sent} events made no message\n${pipeline.output()}`);
    await measure();
    const procs = pipeline.procs;
    const output = pipeline.output;
    const exited = () => (procs.some((p) => p.exitCode !== null || p.signalCode !== null) ? output() : null);
    const cpuS = () => procs.reduce((sum, p) => sum + processCpuS(p.pid), 0);
    return { run, bench: b, exited, cpuS, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function benchTarget(t: Target, redis: Redis, kafka: Kafka): Promise<Step[]> {
  const steps: Step[] = [];
  let session: Session | undefined;
  /** One step; a step that does not hold leaves a backlog, so the next one gets a fresh pipeline. */
  const measure = async (rate: number): Promise<Step> => {
    session ??= await openSession(t, redis, kafka);
    const stepStart = Date.now();
    const [cpuBefore, redisBefore] = [session.cpuS(), await redisCpuS(redis)];
    const s = await session.bench.step(t, rate, STEP_S);
    // Per event sent, the warm pipeline's CPU and Redis's (a step that fell behind counts the
    // work done by the end of its drain wait).
    s.cpuUsPerEvent = Math.round(((session.cpuS() - cpuBefore) * 1e6) / s.sent);
    s.redisUsPerEvent = Math.round((((await redisCpuS(redis)) - redisBefore) * 1e6) / s.sent);
    console.log(`  ${row(s)}`);
    const dead = session.exited();
    if (dead) console.log(`  a process of ${label(t)} exited during the step:\n${dead}`);
    s.hops = await hopLatencies(redis, session.run, stepStart);
    console.log(
      `    ${hopsText(s.hops)}; Kafka timestamp → read ${s.kafkaRead ? `${s.kafkaRead.p50}/${s.kafkaRead.p99}` : '-'}`,
    );
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
      const below = LADDER.filter((r) => r < 1000);
      let hi = below.length;
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

/** Per target: the highest rate that held, the lowest above it that did not, latency at 1,000/s. */
interface Summary extends Target {
  sustained: number;
  failsAt: number | null;
  /** The highest delivered rate of any step (see Step.deliveredRate). */
  delivered: number;
  p50At1000: number;
  p99At1000: number;
  /** CPU µs per event of the system's processes at 1,000/s (Redis's in the steps). */
  cpuUsAt1000: number;
  /** The pipeline's sustained rate over the bare baseline's, same layout and POSTs, same run. */
  ratio?: number;
  /** The same for the delivered rate. */
  deliveredRatio?: number;
  /** The same for p99 at 1,000/s (bare over pipeline: 1 = as fast as the baseline). */
  p99Ratio?: number;
}

function summarise(all: Step[], targets: Target[]): Summary[] {
  const out = targets.map((t): Summary => {
    const mine = all.filter((s) => sameTarget(s, t));
    const held = mine.filter((s) => s.holds).map((s) => s.rate);
    const sustained = held.length > 0 ? Math.max(...held) : 0;
    const above = mine.filter((s) => !s.holds && s.rate > sustained).map((s) => s.rate);
    const at1000 = mine.find((s) => s.rate === 1000);
    return {
      ...t,
      sustained,
      failsAt: above.length > 0 ? Math.min(...above) : null,
      delivered: Math.max(0, ...mine.map((s) => s.deliveredRate)),
      p50At1000: at1000?.p50 ?? Number.NaN,
      p99At1000: at1000?.p99 ?? Number.NaN,
      cpuUsAt1000: at1000?.cpuUsPerEvent ?? Number.NaN,
    };
  });
  for (const s of out) {
    if (s.system === 'bare') continue;
    const layout = s.layout === 'chained' ? 'up' : s.layout;
    const bare = out.find((b) => b.system === 'bare' && b.layout === layout && b.posts === s.posts);
    if (!bare) continue;
    if (bare.sustained > 0) s.ratio = s.sustained / bare.sustained;
    if (bare.delivered > 0) s.deliveredRatio = s.delivered / bare.delivered;
    if (s.p99At1000 > 0) s.p99Ratio = bare.p99At1000 / s.p99At1000;
  }
  return out;
}

function summaryRow(s: Summary): string {
  const sustained = `${s.sustained || 'none tried'}${s.failsAt ? ` (${s.failsAt} fails)` : ' (highest tried)'}`;
  const ratio = (r: number | undefined) => (r === undefined ? '' : r.toFixed(2));
  return `| ${label(s)} | ${sustained} | ${ratio(s.ratio)} | ${s.delivered.toFixed(0)} | ${ratio(s.deliveredRatio)} | ${fmt(s.p50At1000)} | ${fmt(s.p99At1000)} | ${ratio(s.p99Ratio)} | ${Number.isNaN(s.cpuUsAt1000) ? '-' : s.cpuUsAt1000} |`;
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
  const loadBefore = loadavg();
  const busyBefore = machineBusyS();
  console.log(
    `bench:e2e — ${availableParallelism()} CPUs, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}; ` +
      `Redis ${REDIS_URL}, Kafka ${KAFKA_BROKER}; ${ROOTS} roots × ${SPACES} spaces; ${STEP_S} s per step` +
      `${QUICK ? ' (--quick)' : ''}`,
  );
  const targets: Target[] = [];
  // The bare baseline has no chains: the chained layout is quoted against its six hops (`up`).
  for (const layout of LAYOUTS)
    for (const posts of POSTS)
      for (const system of SYSTEMS)
        if (!(system === 'bare' && layout === 'chained')) targets.push({ system, layout, posts });
  const all: Step[] = [];
  try {
    for (const t of targets) {
      console.log(`\n${label(t)}`);
      all.push(...(await benchTarget(t, redis, kafka)));
    }
  } finally {
    redis.disconnect();
    lock?.stdin?.end();
  }
  const seconds = (Date.now() - started) / 1000;
  const header = [
    '| layout | target ev/s | sent ev/s | events | late | delivered ev/s | p50 ms | p95 ms | p99 ms | max ms | CPU µs/event | Redis µs/event | p99 < 1 s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  console.log(
    '\nIngest → Kafka latency (open loop; from just before the send to the consumer receiving the message)\n',
  );
  console.log([...header, ...all.filter((s) => LATENCY_RATES.includes(s.rate)).map(row)].join('\n'));
  console.log('\nHighest sustained rate (p99 < 1 s, every event delivered, sender on schedule)\n');
  console.log(
    [...header, ...all.filter((s) => !LATENCY_RATES.includes(s.rate) || s.rate === 1000).map(row)].join('\n'),
  );
  const summary = summarise(all, targets);
  console.log(
    '\nSummary (/ bare: the pipeline over the bare baseline, same layout, same POSTs, same run; for p99, bare over pipeline)\n',
  );
  console.log(
    [
      '| layout | sustained ev/s | / bare | most delivered ev/s | / bare | p50 ms at 1,000/s | p99 ms at 1,000/s | / bare | CPU µs/event at 1,000/s |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...summary.map(summaryRow),
    ].join('\n'),
  );
  const sizes = Object.fromEntries(measuredSizes);
  if (measuredSizes.size > 0)
    console.log(`\nEntry bytes measured on the pipeline (the bare baseline's): ${JSON.stringify(sizes)}`);
  // The machine is shared: how much of it the rest used is part of every figure.
  const othersBusy = machineBusyS() - busyBefore;
  const machine = {
    cpus: availableParallelism(),
    loadBefore,
    loadAfter: loadavg(),
    busyCores: Number.isFinite(othersBusy) ? othersBusy / seconds : null,
  };
  console.log(
    `\n(${seconds.toFixed(0)} s; machine busy ${machine.busyCores?.toFixed(2) ?? '?'} of ${machine.cpus} cores on average, this benchmark's processes included; load average now ${machine.loadAfter.map((l) => l.toFixed(2)).join(' ')})`,
  );
  if (JSON_OUT) {
    const settings = {
      quick: QUICK,
      stepS: STEP_S,
      batch: BATCH,
      producers: PRODUCERS,
      lingerMs: LINGER_MS,
      ladder: LADDER,
    };
    console.log(
      JSON.stringify({
        bench: 'e2e',
        at: new Date(started).toISOString(),
        machine,
        settings,
        sizes,
        summary,
        steps: all,
      }),
    );
  }
}

/** User + system CPU seconds of one process so far, from /proc/<pid>/stat; NaN elsewhere. */
function processCpuS(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ (100)
  } catch {
    return Number.NaN;
  }
}

/** Redis's CPU seconds so far (user + system, main thread and the rest), from INFO cpu. */
async function redisCpuS(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat; NaN elsewhere. */
function machineBusyS(): number {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - v[3]! - v[4]!) / 100; // minus idle and iowait; USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
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
