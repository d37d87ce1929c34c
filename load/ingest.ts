/**
 * Load test of the ingest HTTP door with autocannon, against the real server.
 *
 *   npm run load:ingest                                   # starts its own redis-server on a free loopback port
 *   REDIS_URL=redis://127.0.0.1:6379 npm run load:ingest  # uses that Redis instead
 *
 * Scenarios, each for LOAD_DURATION_S after a LOAD_WARMUP_S warm-up, in rounds (baseline first
 * in every round, so each round's ratio compares runs seconds apart on a noisy machine):
 *   c) baseline  POST /events on load/ingest-baseline.ts: a bare fastify route doing one XADD
 *   a) single    POST /events with one space.trust_extended envelope, a unique event_id each
 *   b) batch     POST /events/batch with LOAD_BATCH_EVENTS envelopes (default 100)
 *   d) compare   POST /events on the ingest door of another checkout (LOAD_COMPARE_DIR, e.g. the
 *                commit before a change, with its node_modules): before and after in the same run
 * The servers run as child processes (`node ops/cli/atlas.ts run ingest`, `node load/ingest-baseline.ts`)
 * on a fresh ATLAS_PREFIX with ATLAS_HIGH_WATER high enough that 429 never interferes.
 * autocannon runs in a worker thread of this process (one per run), so its CPU is this
 * process's CPU: the table shows it beside the servers', Redis's and everything else's.
 * All traffic is on 127.0.0.1. Every key of the prefix is deleted after each round and at exit;
 * a redis-server this script started is stopped.
 *
 * Settings (environment): LOAD_ROUNDS (3), LOAD_DURATION_S (8), LOAD_WARMUP_S (2),
 * LOAD_CONNECTIONS (16, for single and baseline), LOAD_BATCH_CONNECTIONS (8), LOAD_BATCH_EVENTS (100),
 * LOAD_SCENARIOS (baseline,single,batch; compare too when LOAD_COMPARE_DIR is set), LOAD_EVENTS
 * (`generic`: envelopes of the game, graph and kasmina families instead of topology ones),
 * LOAD_FIXTURES (dir of topology fixtures; default
 * ../shared/fixtures/topology beside the repo, else a built-in envelope), LOAD_CPU_PROF (dir: run both
 * servers under --cpu-prof; their profiles, named with the pids printed at the start, land there), REDIS_URL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { generationKeys } from '../pipeline/generation.ts';
import { keys as keysFor } from '../pipeline/keys.ts';

const ROOT = resolve(import.meta.dirname, '..');

// ---------------------------------------------------------------------------------------------
// Request bodies: fixture envelopes with the event_id cut out, so a body is a few concatenations.

interface Template {
  before: string;
  after: string;
}

const ID_MARK = '\u0000ID\u0000';

const BUILTIN_ENVELOPE = {
  event_id: '',
  event_type: 'space.trust_extended',
  source: 'fixture',
  timestamp: 1732300006000,
  version: 1,
  payload: {
    source_space_id: '25000000000000000000000000000001',
    extension: { kind: 'verified', target_space_id: '6f000000000000000000000000000003' },
    meta: {
      block_number: 1006,
      block_timestamp: 1732300072,
      tx_hash: '0x0000000000000000000000000000000000000000000000000000000000000007',
      cursor: 'basic:6',
    },
  },
};

/** Events of the generic families (stages/families): one of each route a generic event can take. */
const GENERIC_ENVELOPES = [
  ['game.score_updated', 1, { game_id: 'load', player_id: 'p-1', score: 7 }],
  ['graph.node_activated', 1, { run_id: 'load', algorithm: 'bfs', node_id: 'n-1', step: 3 }],
  ['kasmina.telemetry.layer_health', 1, { layer_id: 'load', health: 0.9, latency_ms: 3.5 }],
  ['kasmina.control.lifecycle', 1, { command_id: 'c-1', seed_id: 's-1', action: 'germinate' }],
].map(([event_type, version, payload]) => ({
  event_id: '',
  event_type,
  source: 'load',
  timestamp: 1732300006000,
  version,
  payload,
}));

function templateOf(e: Record<string, unknown>): Template {
  const [before, after] = JSON.stringify({ ...e, event_id: ID_MARK }).split(JSON.stringify(ID_MARK));
  return { before: `${before}"`, after: `"${after}` };
}

function loadTemplates(): { templates: Template[]; from: string } {
  if (process.env.LOAD_EVENTS === 'generic') {
    const types = GENERIC_ENVELOPES.map((e) => e.event_type).join(', ');
    return { templates: GENERIC_ENVELOPES.map(templateOf), from: `generic family envelopes (${types})` };
  }
  const dir = process.env.LOAD_FIXTURES ?? resolve(ROOT, '..', 'shared', 'fixtures', 'topology');
  const envelopes: Record<string, unknown>[] = [];
  if (existsSync(dir)) {
    for (const file of readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()) {
      const fixture = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { events?: unknown[] };
      for (const e of fixture.events ?? []) {
        const env = e as Record<string, unknown>;
        if (env.event_type === 'space.trust_extended') envelopes.push(env);
      }
    }
  }
  const from =
    envelopes.length > 0
      ? `${envelopes.length} space.trust_extended envelopes of ${dir}`
      : 'built-in envelope';
  if (envelopes.length === 0) envelopes.push(BUILTIN_ENVELOPE);
  return { templates: envelopes.map(templateOf), from };
}

// ---------------------------------------------------------------------------------------------
// The load generator: one worker thread per run.

interface Job {
  url: string;
  path: string;
  connections: number;
  durationS: number;
  warmupS: number;
  eventsPerRequest: number;
  idPrefix: string;
  templates: Template[];
}

interface RunResult {
  durationS: number;
  requests: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** 2xx answers during warm-up (they add entries to the stream too). */
  warmupOk: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Event-loop utilisation of the load generator thread (1 = saturated). */
  elu: number;
}

async function generate(job: Job): Promise<void> {
  const { default: autocannon } = await import('autocannon');
  const { performance } = await import('node:perf_hooks');
  let n = 0;
  const { templates } = job;
  const one = (): string => {
    const t = templates[n % templates.length]!;
    return t.before + job.idPrefix + (n++).toString(36) + t.after;
  };
  const body =
    job.eventsPerRequest === 1
      ? one
      : () => {
          let s = `[${one()}`;
          for (let i = 1; i < job.eventsPerRequest; i++) s += `,${one()}`;
          return `${s}]`;
        };
  const options = (durationS: number) => ({
    url: job.url,
    connections: job.connections,
    duration: durationS,
    timeout: 10,
    requests: [
      {
        method: 'POST',
        path: job.path,
        headers: { 'content-type': 'application/json' },
        setupRequest: (req: { body?: string | Buffer }) => {
          req.body = body();
          return req;
        },
      },
    ],
  });
  let warmupOk = 0;
  if (job.warmupS > 0) warmupOk = (await autocannon(options(job.warmupS)))['2xx'];
  // Tell the main thread the measured part starts (it samples CPU counters), wait for its go.
  await new Promise<void>((go) => {
    parentPort!.once('message', () => go());
    parentPort!.postMessage({ type: 'start' });
  });
  let latencies = new Float64Array(1 << 18);
  let count = 0;
  const elu0 = performance.eventLoopUtilization();
  const instance = autocannon(options(job.durationS));
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status < 200 || status > 299) return;
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = ms;
  });
  const r = await instance;
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const sorted = latencies.subarray(0, count).sort();
  const q = (p: number) => (count === 0 ? Number.NaN : sorted[Math.min(count - 1, Math.floor(p * count))]!);
  const statusCodes = Object.fromEntries(Object.entries(r.statusCodeStats).map(([k, v]) => [k, v.count]));
  const result: RunResult = {
    durationS: r.duration,
    requests: r['2xx'] + r.non2xx,
    ok: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes,
    warmupOk,
    p50: q(0.5),
    p99: q(0.99),
    p999: q(0.999),
    max: count === 0 ? Number.NaN : sorted[count - 1]!,
    elu,
  };
  parentPort!.postMessage({ type: 'done', result });
}

let activeWorker: Worker | undefined;

function runInWorker(job: Job, onStart: () => void): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    activeWorker = worker;
    let result: RunResult | undefined;
    worker.on('message', (m: { type: 'start' } | { type: 'done'; result: RunResult }) => {
      if (m.type === 'start') {
        onStart();
        worker.postMessage('go');
      } else result = m.result;
    });
    worker.on('error', reject);
    worker.on('exit', (code) =>
      result ? resolvePromise(result) : reject(new Error(`load generator exited with ${code}`)),
    );
  });
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc (Linux); where it is missing the columns show '-'.

const TICK_S = 0.01; // USER_HZ is 100 on Linux

function procCpuS(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_S; // utime, stime
  } catch {
    return Number.NaN;
  }
}

/** Busy CPU seconds of the whole machine (all cores). */
function machineBusyS(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - v[3]! - v[4]!) * TICK_S; // minus idle, iowait
  } catch {
    return Number.NaN;
  }
}

async function redisCpuS(redis: import('ioredis').Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return get('used_cpu_user') + get('used_cpu_sys');
}

interface CpuSample {
  at: number;
  server: number;
  redis: number;
  self: number;
  machine: number;
}

/** CPU use in % of one core over a run: the server under test, Redis, the load generator, the rest. */
interface CpuShare {
  server: number;
  redis: number;
  loadgen: number;
  other: number;
}

function cpuShare(a: CpuSample, b: CpuSample, redisIsOurs: boolean): CpuShare {
  const s = (b.at - a.at) / 1000;
  const pct = (x: number) => (100 * x) / s;
  const server = b.server - a.server;
  const redis = b.redis - a.redis;
  const self = b.self - a.self;
  // Redis elsewhere (REDIS_URL) may be another machine: then it is not part of "other".
  const other = b.machine - a.machine - server - self - (redisIsOurs ? redis : 0);
  return { server: pct(server), redis: pct(redis), loadgen: pct(self), other: pct(Math.max(0, other)) };
}

// ---------------------------------------------------------------------------------------------
// Processes.

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => ok(port));
    });
  });
}

interface Child {
  name: string;
  proc: ChildProcess;
  output: () => string;
}

const children: Child[] = [];

function startChild(name: string, command: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const keep = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const child = { name, proc, output: () => tail };
  children.push(child);
  proc.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`\n${name} exited unexpectedly (${signal ?? code}); its last output:\n${tail}\n`);
      void shutdown(1);
    }
  });
  return child;
}

async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const exited = new Promise<void>((ok) => c.proc.once('exit', () => ok()));
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), 8000);
  await exited;
  clearTimeout(timer);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not become ready within ${timeoutMs} ms`);
}

const httpReady = (port: number) => async () =>
  (await fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(1000) })).ok;

// ---------------------------------------------------------------------------------------------
// Redis keys of the run.

/** Deletes the prefix's keys but those in `keep`. */
async function deletePrefix(
  redis: import('ioredis').Redis,
  prefix: string,
  keep: ReadonlySet<string> = new Set(),
): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    // Small steps: each UNLINK of a step blocks a shared Redis for a few milliseconds at most.
    const [next, found] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 2000);
    cursor = next;
    const gone = found.filter((k) => !keep.has(k));
    if (gone.length > 0) deleted += await redis.unlink(...gone);
  } while (cursor !== '0');
  return deleted;
}

// ---------------------------------------------------------------------------------------------
// Orchestration.

type ScenarioName = 'baseline' | 'single' | 'batch' | 'compare';

interface Scenario {
  name: ScenarioName;
  label: string;
  server: 'ingest' | 'baseline' | 'compare';
  path: string;
  connections: number;
  eventsPerRequest: number;
}

interface Row {
  round: number;
  scenario: Scenario;
  result: RunResult;
  cpu: CpuShare;
  reqPerS: number;
  eventsPerS: number;
  /** single (or compare) req/s ÷ baseline req/s of the same round. */
  ratio?: number;
}

const envInt = (name: string, def: number): number => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a non-negative number`);
  return n;
};

let stopping = false;
let shuttingDown: Promise<never> | undefined;
let cleanup: (() => Promise<void>) | undefined;

/**
 * Stops the load, then the servers (no write can follow), deletes the keys, stops our Redis.
 * Later calls (a failing run while stopping) wait for the first.
 */
function shutdown(code: number): Promise<never> {
  shuttingDown ??= (async () => {
    stopping = true;
    await activeWorker?.terminate();
    const isRedis = (c: Child) => c.name === 'redis-server';
    await Promise.allSettled(children.filter((c) => !isRedis(c)).map(stopChild));
    try {
      await cleanup?.();
    } catch (err) {
      process.stderr.write(`cleanup failed: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    await Promise.allSettled(children.filter(isRedis).map(stopChild));
    process.exit(code);
  })();
  return shuttingDown;
}

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const fmtMs = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-');
const fmtPct = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : '-');

function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w, i) => (i < 2 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

const HEADER = [
  'round',
  'scenario',
  'conns',
  'req/s',
  'events/s',
  'p50 ms',
  'p99 ms',
  'p99.9 ms',
  'errors',
  'non-2xx',
  'cpu% srv/redis/gen/other',
  'cpu µs/event srv/redis',
  'gen loop',
  'vs baseline',
];

/** CPU microseconds per event of the server and of Redis: steadier than req/s on a busy machine. */
const perEvent = (r: Row, pct: number) => (pct / 100 / r.eventsPerS) * 1e6;

function rowCells(r: Row): string[] {
  const res = r.result;
  return [
    String(r.round),
    r.scenario.label,
    String(r.scenario.connections),
    fmtInt(r.reqPerS),
    fmtInt(r.eventsPerS),
    fmtMs(res.p50),
    fmtMs(res.p99),
    fmtMs(res.p999),
    String(res.errors),
    String(res.non2xx),
    [r.cpu.server, r.cpu.redis, r.cpu.loadgen, r.cpu.other].map(fmtPct).join('/'),
    [perEvent(r, r.cpu.server), perEvent(r, r.cpu.redis)].map((x) => x.toFixed(1)).join('/'),
    `${fmtPct(100 * res.elu)}%`,
    r.ratio === undefined ? '' : `${(100 * r.ratio).toFixed(0)}%`,
  ];
}

async function main(): Promise<void> {
  const rounds = envInt('LOAD_ROUNDS', 3);
  const durationS = envInt('LOAD_DURATION_S', 8);
  const warmupS = envInt('LOAD_WARMUP_S', 2);
  const connections = envInt('LOAD_CONNECTIONS', 16);
  const batchConnections = envInt('LOAD_BATCH_CONNECTIONS', 8);
  const batchEvents = envInt('LOAD_BATCH_EVENTS', 100);
  const compareDir = process.env.LOAD_COMPARE_DIR ? resolve(process.env.LOAD_COMPARE_DIR) : undefined;
  const wanted = (process.env.LOAD_SCENARIOS ?? `baseline,single,batch${compareDir ? ',compare' : ''}`)
    .split(',')
    .map((s) => s.trim());
  const cpuProfDir = process.env.LOAD_CPU_PROF ? resolve(process.env.LOAD_CPU_PROF) : undefined;

  const { templates, from } = loadTemplates();
  const prefix = `load-${Date.now().toString(36)}-${process.pid}`;
  const { Redis } = await import('ioredis');

  // Redis: the given one, or our own on a free loopback port.
  let redisUrl = process.env.REDIS_URL;
  const redisIsOurs = !redisUrl;
  let redisDir: string | undefined;
  if (!redisUrl) {
    const port = await freePort();
    redisDir = mkdtempSync(join(tmpdir(), 'atlas-load-'));
    redisUrl = `redis://127.0.0.1:${port}`;
    const child = startChild(
      'redis-server',
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir],
      process.env,
    );
    child.proc.once('error', (err) => {
      process.stderr.write(`cannot start redis-server (${err.message}); install it or give REDIS_URL\n`);
      void shutdown(1);
    });
  }
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2, retryStrategy: () => 100 });
  redis.on('error', () => {});
  await waitFor('Redis', async () => (await redis.ping()) === 'PONG');
  let deleted = 0;
  cleanup = async () => {
    deleted += await deletePrefix(redis, prefix);
    deleted += await deletePrefix(redis, `${prefix}-compare`);
    process.stdout.write(`\ncleanup: deleted ${fmtInt(deleted)} keys of prefix {${prefix}} in all\n`);
    redis.disconnect();
    if (redisDir) rmSync(redisDir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void shutdown(130));
  process.once('SIGTERM', () => void shutdown(143));

  const serverEnv = (port: number): NodeJS.ProcessEnv => ({
    ...process.env,
    REDIS_URL: redisUrl,
    ATLAS_HTTP_PORT: String(port),
    ATLAS_PREFIX: prefix,
    ATLAS_HIGH_WATER: String(1_000_000_000),
    ATLAS_MAX_BATCH_EVENTS: String(Math.max(1000, batchEvents)),
    LOG_LEVEL: 'warn',
    ATLAS_LOG_JSON: '1',
  });
  const ingestPort = await freePort();
  const baselinePort = await freePort();
  const comparePort = await freePort();
  const ingest = startChild(
    'ingest server',
    process.execPath,
    [
      ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
      'ops/cli/atlas.ts',
      'run',
      'ingest',
    ],
    serverEnv(ingestPort),
  );
  const baseline = wanted.includes('baseline')
    ? startChild(
        'baseline server',
        process.execPath,
        [...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []), 'load/ingest-baseline.ts'],
        serverEnv(baselinePort),
      )
    : undefined;
  // The other checkout's door, on a prefix of its own (each door joins its own generation).
  const compare =
    compareDir && wanted.includes('compare')
      ? startChild(
          'compare server',
          process.execPath,
          [
            ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
            join(compareDir, 'ops/cli/atlas.ts'),
            'run',
            'ingest',
          ],
          { ...serverEnv(comparePort), ATLAS_PREFIX: `${prefix}-compare` },
        )
      : undefined;
  await waitFor('ingest server', httpReady(ingestPort));
  if (baseline) await waitFor('baseline server', httpReady(baselinePort));
  if (compare) await waitFor('compare server', httpReady(comparePort));

  const redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '?';
  const out = (s = '') => process.stdout.write(`${s}\n`);
  out('# ingest load test');
  out(
    `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? '?'}), node ${process.version}, ` +
      `redis ${redisVersion} at ${redisUrl}${redisIsOurs ? ' (started by this script)' : ' (REDIS_URL)'}, ` +
      `load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
  out(
    `load generator: autocannon in a worker thread of this process (pid ${process.pid}); servers: ingest pid ${ingest.proc.pid}` +
      `${baseline ? `, baseline pid ${baseline.proc.pid}` : ''}` +
      `${compare ? `, compare pid ${compare.proc.pid} (${compareDir})` : ''}; all on 127.0.0.1`,
  );
  out(
    `bodies: ${from}; prefix {${prefix}}; ${rounds} round(s) of ${warmupS} s warm-up + ${durationS} s per scenario`,
  );
  out();

  const scenarios: Scenario[] = (
    [
      {
        name: 'baseline',
        label: 'c) baseline: fastify + XADD',
        server: 'baseline',
        path: '/events',
        connections,
        eventsPerRequest: 1,
      },
      {
        name: 'single',
        label: 'a) POST /events',
        server: 'ingest',
        path: '/events',
        connections,
        eventsPerRequest: 1,
      },
      {
        name: 'compare',
        label: 'd) POST /events, LOAD_COMPARE_DIR',
        server: 'compare',
        path: '/events',
        connections,
        eventsPerRequest: 1,
      },
      {
        name: 'batch',
        label: `b) POST /events/batch ×${batchEvents}`,
        server: 'ingest',
        path: '/events/batch',
        connections: batchConnections,
        eventsPerRequest: batchEvents,
      },
    ] satisfies Scenario[]
  ).filter((s) => wanted.includes(s.name));

  const rows: Row[] = [];
  const pidOf = {
    ingest: ingest.proc.pid!,
    baseline: baseline?.proc.pid ?? 0,
    compare: compare?.proc.pid ?? 0,
  };
  for (let round = 1; round <= rounds; round++) {
    let ingestEvents = 0;
    let baselineEvents = 0;
    // Baseline and single swap places every other round, so neither always runs first.
    const order =
      round % 2 === 1
        ? scenarios
        : scenarios.map((s) => {
            const swap = s.name === 'baseline' ? 'single' : s.name === 'single' ? 'baseline' : s.name;
            return scenarios.find((t) => t.name === swap) ?? s;
          });
    for (const scenario of order) {
      const port = { ingest: ingestPort, baseline: baselinePort, compare: comparePort }[scenario.server];
      const sample = async (): Promise<CpuSample> => ({
        at: performance.now(),
        server: procCpuS(pidOf[scenario.server]),
        redis: await redisCpuS(redis),
        self: procCpuS(process.pid),
        machine: machineBusyS(),
      });
      let before: Promise<CpuSample> | undefined;
      const result = await runInWorker(
        {
          url: `http://127.0.0.1:${port}`,
          path: scenario.path,
          connections: scenario.connections,
          durationS,
          warmupS,
          eventsPerRequest: scenario.eventsPerRequest,
          idPrefix: `${prefix}-${scenario.name}-${round}-`,
          templates,
        },
        () => {
          before = sample();
        },
      );
      const after = await sample();
      const cpu = cpuShare(await before!, after, redisIsOurs);
      const reqPerS = result.ok / result.durationS;
      const row: Row = {
        round,
        scenario,
        result,
        cpu,
        reqPerS,
        eventsPerS: reqPerS * scenario.eventsPerRequest,
      };
      const accepted = (result.ok + result.warmupOk) * scenario.eventsPerRequest;
      if (scenario.server === 'ingest') ingestEvents += accepted;
      else if (scenario.server === 'baseline') baselineEvents += accepted;
      rows.push(row);
      process.stderr.write(`round ${round}: ${scenario.label}: ${fmtInt(reqPerS)} req/s\n`);
    }
    // Every acknowledged event must be in the stream (in-flight ones at a run's end may add a few).
    const keys = keysFor(prefix);
    const inIngest = await redis.xlen(keys.stream('ingest'));
    const inBaseline = await redis.xlen(keys.stream('baseline'));
    if (inIngest < ingestEvents || inBaseline < baselineEvents)
      out(
        `WARNING round ${round}: acknowledged ${ingestEvents} ingest / ${baselineEvents} baseline events, ` +
          `streams hold ${inIngest} / ${inBaseline}`,
      );
    const base = rows.find((r) => r.round === round && r.scenario.name === 'baseline');
    for (const name of ['single', 'compare']) {
      const one = rows.find((r) => r.round === round && r.scenario.name === name);
      if (base && one) one.ratio = one.reqPerS / base.reqPerS;
    }
    // The door keeps running: without its generation it would refuse every later round (503).
    deleted += await deletePrefix(redis, prefix, new Set(Object.values(generationKeys(keys))));
    const other = keysFor(`${prefix}-compare`);
    deleted += await deletePrefix(redis, other.prefix, new Set(Object.values(generationKeys(other))));
  }

  rows.sort((x, y) => x.round - y.round || scenarios.indexOf(x.scenario) - scenarios.indexOf(y.scenario));
  out('## runs');
  out(table(HEADER, rows.map(rowCells)));
  out();
  out(`## medians of ${rounds} round(s)`);
  const med = (s: Scenario, f: (r: Row) => number) => median(rows.filter((r) => r.scenario === s).map(f));
  const medRows = scenarios.map((s) => {
    const ratio = med(s, (r) => r.ratio ?? Number.NaN);
    return [
      'med',
      s.label,
      String(s.connections),
      fmtInt(med(s, (r) => r.reqPerS)),
      fmtInt(med(s, (r) => r.eventsPerS)),
      fmtMs(med(s, (r) => r.result.p50)),
      fmtMs(med(s, (r) => r.result.p99)),
      fmtMs(med(s, (r) => r.result.p999)),
      fmtInt(med(s, (r) => r.result.errors)),
      fmtInt(med(s, (r) => r.result.non2xx)),
      [
        med(s, (r) => r.cpu.server),
        med(s, (r) => r.cpu.redis),
        med(s, (r) => r.cpu.loadgen),
        med(s, (r) => r.cpu.other),
      ]
        .map(fmtPct)
        .join('/'),
      [med(s, (r) => perEvent(r, r.cpu.server)), med(s, (r) => perEvent(r, r.cpu.redis))]
        .map((x) => x.toFixed(1))
        .join('/'),
      `${fmtPct(100 * med(s, (r) => r.result.elu))}%`,
      Number.isFinite(ratio) ? `${(100 * ratio).toFixed(0)}%` : '',
    ];
  });
  out(table(HEADER, medRows));
  out();
  out(
    'cpu%: 100 = one core, over the timed part; "other" = the rest of the machine (noise). ' +
      'cpu µs/event: CPU time of the server / of Redis per accepted event. ' +
      'gen loop: how busy the load generator thread was (near 100% = the client limits the run).',
  );
  const busy = median(rows.map((r) => r.cpu.other));
  if (busy > 25)
    out(
      `NOTE: other work on this machine used a median ${fmtPct(busy)}% of a core during the runs: ` +
        'req/s and latency understate an idle machine; the cpu µs/event columns are the steadier measure.',
    );
  const non2xx = rows.filter((r) => r.result.non2xx > 0 || r.result.errors > 0);
  for (const r of non2xx)
    out(
      `round ${r.round} ${r.scenario.label}: status codes ${JSON.stringify(r.result.statusCodes)}, ` +
        `${r.result.errors} errors (${r.result.timeouts} timeouts)`,
    );

  const goal = (ok: boolean, text: string) => out(`${ok ? 'PASS' : 'FAIL'}  ${text}`);
  const single = scenarios.find((s) => s.name === 'single');
  const batch = scenarios.find((s) => s.name === 'batch');
  out('## goals (medians)');
  if (single) {
    const rps = med(single, (r) => r.reqPerS);
    const p99 = med(single, (r) => r.result.p99);
    goal(rps >= 10_000, `single events ≥ 10,000 req/s: ${fmtInt(rps)}`);
    goal(p99 < 10, `single events p99 < 10 ms: ${fmtMs(p99)}`);
    const ratio = med(single, (r) => r.ratio ?? Number.NaN);
    if (Number.isFinite(ratio))
      goal(ratio >= 0.9, `single events ≥ 90% of the baseline: ${(100 * ratio).toFixed(1)}%`);
  }
  if (batch) {
    const eps = med(batch, (r) => r.eventsPerS);
    goal(eps >= 50_000, `batches ≥ 50,000 events/s: ${fmtInt(eps)}`);
  }
  if (non2xx.length > 0) out('FAIL  some runs had errors or non-2xx answers (above)');
  await shutdown(0);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    if (stopping) return; // interrupted: the load generator was stopped on purpose
    process.stderr.write(`load:ingest: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    void shutdown(1);
  });
} else {
  await generate(workerData as Job);
}
