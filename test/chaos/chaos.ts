/**
 * The chaos runner: the whole pipeline in separate processes under load, and a seeded schedule
 * of faults, then the verdict per root (test/chaos/verify.ts).
 *
 * The pipeline: every stage its own process — two doors (ingest), two replicas of validate and
 * serialize, each singleton (transitive, canonical, emit) an active instance and a hot standby.
 * Redis is a redis-server of the run's own (AOF, fsync every second, like ops/services), so it
 * can be restarted with or without its data without disturbing anything else; every process
 * reaches it through a fault proxy of its own (test/support/fault-proxy.ts). Kafka is the shared
 * test broker (ATLAS_TEST_KAFKA_BROKER), held exclusively for the run (test/support/e2e-lock.ts)
 * because the broker outage stops it for real.
 *
 * Faults, spread evenly over the run in a seeded order:
 * - kill: kill -9 of a random process, started again at once;
 * - pause: SIGSTOP of a singleton's lease holder for 1.5–2.5 × ATLAS_LEASE_MS, then SIGCONT;
 * - drop: the proxy of one process of a stage swallows the reply to a command that carried data
 *   and resets the connection — XREADGROUP for the stream stages, EVALSHA (the idempotent append)
 *   for the door;
 * - redis-restart: SHUTDOWN of Redis (the AOF flushed) and a start on the same port;
 * - broker-outage: emit's lease holder paused, the broker stopped, emit resumed while the broker
 *   stays down, then the broker started again.
 * After the verdict, optionally, lost state: Redis restarted without its data. The pipeline must
 * stop loudly (every door's /ready 503, an error log about lost state) and `atlas recover` must
 * bring it back so that the topic continues correctly; while `atlas recover` does not exist, the
 * phase reports "skipped: atlas recover not available".
 */
import type { Redis } from 'ioredis';
import { afterAll, expect, it } from 'vitest';
import { listDeadLetters } from '../../pipeline/dlq.ts';
import { streams } from '../../stages/streams.ts';
import {
  createTopic,
  decodeTopic,
  deleteTopics,
  KAFKA_BROKER,
  readTopic,
  topicCount,
  uniqueTopic,
} from '../support/e2e-kafka.ts';
import { brokerLockFile, lockBroker } from '../support/e2e-lock.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, emissionCauses } from '../support/e2e-scenario.ts';
import { kafkaDown, kafkaUp } from '../support/e2e-services.ts';
import type { Envelope } from '../support/events.ts';
import { delay, withTimeout } from '../support/eventually.ts';
import { FaultProxy } from '../support/fault-proxy.ts';
import { request } from '../support/http.ts';
import { leaseHolderPid } from '../support/pipeline-processes.ts';
import { prng } from '../support/prng.ts';
import { killChildren, runAtlas } from '../support/processes.ts';
import { connect, type ScratchRedis, startScratchRedis, uniquePrefix } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';
import { type Verdict, verify, verifyAcrossRecovery } from './verify.ts';

export interface ChaosOptions {
  seed: number;
  /** How long the faults are spread over. */
  seconds: number;
  kills: number;
  pauses: number;
  dropsPerStage: number;
  redisRestarts: number;
  brokerOutages: number;
  /** How long the broker stays down in an outage. */
  outageMs: number;
  /** Run the lost-state phase (Redis restarted without data) after the verdict. */
  lostState: boolean;
  eventsPerS: number;
  leaseMs: number;
  /** How long the pipeline may take to publish everything once the faults are over. */
  drainMs: number;
}

const SHORT: ChaosOptions = {
  seed: 20_261_129,
  seconds: 45,
  kills: 4,
  pauses: 2,
  dropsPerStage: 1,
  redisRestarts: 1,
  brokerOutages: 1,
  outageMs: 5_000,
  lostState: false,
  eventsPerS: 8,
  leaseMs: 2_000,
  drainMs: 120_000,
};

const LONG: ChaosOptions = {
  ...SHORT,
  seconds: 300,
  kills: 40,
  pauses: 20,
  dropsPerStage: 3,
  outageMs: 20_000,
  // the 12 processes share the machine with the faults: a pace they keep up with
  eventsPerS: 5,
  lostState: true,
  drainMs: 180_000,
};

/** Options from CHAOS_* variables over the defaults (CHAOS_SHORT=1: the short run). */
export function chaosOptions(env: NodeJS.ProcessEnv = process.env): ChaosOptions {
  const base = env.CHAOS_SHORT === '1' ? SHORT : LONG;
  const num = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${raw} is not a number ≥ 0`);
    return n;
  };
  return {
    seed: num('CHAOS_SEED', base.seed),
    seconds: num('CHAOS_SECONDS', base.seconds),
    kills: num('CHAOS_KILLS', base.kills),
    pauses: num('CHAOS_PAUSES', base.pauses),
    dropsPerStage: num('CHAOS_DROPS_PER_STAGE', base.dropsPerStage),
    redisRestarts: num('CHAOS_REDIS_RESTARTS', base.redisRestarts),
    brokerOutages: num('CHAOS_BROKER_OUTAGES', base.brokerOutages),
    outageMs: num('CHAOS_OUTAGE_MS', base.outageMs),
    lostState: env.CHAOS_LOST_STATE === undefined ? base.lostState : env.CHAOS_LOST_STATE === '1',
    eventsPerS: num('CHAOS_EVENTS_PER_S', base.eventsPerS),
    leaseMs: num('CHAOS_LEASE_MS', base.leaseMs),
    drainMs: num('CHAOS_DRAIN_MS', base.drainMs),
  };
}

export type FaultKind = 'kill' | 'pause' | 'drop' | 'redis-restart' | 'broker-outage';

type Stage = 'ingest' | 'validate' | 'transitive' | 'canonical' | 'serialize' | 'emit';

const STAGES: Stage[] = ['ingest', 'validate', 'transitive', 'canonical', 'serialize', 'emit'];
const SINGLETONS = new Set<Stage>(['transitive', 'canonical', 'emit']);

/** Process names of a stage: a and b for a singleton (active + standby), 1 and 2 otherwise. */
function processesOf(stage: Stage): string[] {
  return SINGLETONS.has(stage) ? [`${stage}-a`, `${stage}-b`] : [`${stage}-1`, `${stage}-2`];
}

interface Fault {
  kind: FaultKind;
  stage?: Stage;
}

/** What the runner did and found. */
export interface ChaosReport {
  options: ChaosOptions;
  /** Faults injected, per kind (drops also per stage). */
  injected: Record<FaultKind, number>;
  dropsPerStage: Record<string, number>;
  events: number;
  messages: number;
  verdict: Verdict;
  /** Why the pipeline was not drained at the end (null when it was). */
  undrained: string | null;
  lostState: string;
  violations: string[];
  seconds: number;
}

/** A fault that could not be injected (the stage never read anything within the wait). */
export class FaultNotInjected extends Error {
  override name = 'FaultNotInjected';
}

/** How long a dropReplyTo waits for a reply that carries data before it counts as not injected. */
const DROP_WAIT_MS = 20_000;
/** How often a drop is tried in all before it counts as not injected. */
const DROP_TRIES = 3;
/** Events posted after `atlas recover` to see that the pipeline goes on correctly. */
const RECOVERY_EVENTS = 50;
/** The topic must stop growing for this long before the pipeline counts as drained. */
const DRAIN_QUIET_MS = 3000;

/** The schedule: every fault asked for, in a seeded order; the Redis restarts and outages evenly placed. */
function schedule(opts: ChaosOptions, rand: () => number): Fault[] {
  const faults: Fault[] = [];
  for (let i = 0; i < opts.kills; i++) faults.push({ kind: 'kill' });
  for (let i = 0; i < opts.pauses; i++) faults.push({ kind: 'pause' });
  for (const stage of STAGES)
    for (let i = 0; i < opts.dropsPerStage; i++) faults.push({ kind: 'drop', stage });
  for (let i = faults.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [faults[i], faults[j]] = [faults[j]!, faults[i]!];
  }
  const big: Fault[] = [
    ...Array.from({ length: opts.redisRestarts }, (): Fault => ({ kind: 'redis-restart' })),
    ...Array.from({ length: opts.brokerOutages }, (): Fault => ({ kind: 'broker-outage' })),
  ];
  big.forEach((fault, i) => {
    faults.splice(Math.floor(((i + 1) * faults.length) / (big.length + 1)) + i, 0, fault);
  });
  return faults;
}

const say = (msg: string): void => {
  console.log(`[chaos ${new Date().toISOString().slice(11, 19)}] ${msg}`);
};

class ChaosRun {
  readonly opts: ChaosOptions;
  readonly rand: () => number;
  readonly prefix = uniquePrefix('chaos');
  readonly topic = uniqueTopic('chaos');
  readonly brokerPort = Number(KAFKA_BROKER.split(',')[0]!.split(':').at(-1));
  readonly proxies = new Map<string, FaultProxy>();
  readonly injected: Record<FaultKind, number> = {
    kill: 0,
    pause: 0,
    drop: 0,
    'redis-restart': 0,
    'broker-outage': 0,
  };
  readonly dropsPerStage: Record<string, number> = Object.fromEntries(STAGES.map((s) => [s, 0]));
  readonly problems: string[] = [];
  redis!: ScratchRedis;
  admin!: Redis;
  p!: E2EPipeline;
  events: Envelope[] = [];
  posted = 0;
  stopPosting = false;

  constructor(opts: ChaosOptions) {
    this.opts = opts;
    this.rand = prng(opts.seed);
  }

  async start(pool: Envelope[], roots: string[]): Promise<void> {
    this.events = pool;
    this.redis = await startScratchRedis({ aof: true });
    this.admin = connect(this.redis.url);
    this.admin.on('error', () => undefined);
    await createTopic(this.topic, 3);
    this.p = new E2EPipeline(this.admin, {
      prefix: this.prefix,
      topic: this.topic,
      roots,
      env: {
        ATLAS_LEASE_MS: String(this.opts.leaseMs),
        // replicas take over a dead replica's entries within the run
        ATLAS_CLAIM_IDLE_MS: '10000',
        // every validated entry stays readable for the verdict
        ATLAS_RETAIN_ENTRIES: '10000000',
      },
    });
    for (const stage of STAGES)
      for (const name of processesOf(stage)) {
        const proxy = await FaultProxy.start({ target: `127.0.0.1:${this.redis.port}` });
        this.proxies.set(name, proxy);
        await this.p.run(name, [stage], { REDIS_URL: proxy.redisUrl });
      }
  }

  /** Posts the pool in order at the set pace until told to stop; a dead door or a 503 is retried. */
  async postAll(until = this.events.length): Promise<void> {
    const started = performance.now();
    const from = this.posted;
    while (this.posted < until && !this.stopPosting) {
      const due = started + ((this.posted - from) * 1000) / this.opts.eventsPerS;
      if (due > performance.now()) await delay(due - performance.now());
      await this.postDurably(this.events[this.posted]!);
      this.posted++;
    }
  }

  /** One event until a door accepts it (a retry after a lost answer is a duplicate the door dedups). */
  private async postDurably(event: Envelope): Promise<void> {
    const deadline = Date.now() + 180_000;
    for (;;) {
      try {
        await this.p.postOne([event], false);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`event ${event.event_id} refused for 180 s: ${err}`);
        await delay(100);
      }
    }
  }

  /** The name of the process holding a singleton's lease, or a random process of the stage. */
  async target(stage: Stage): Promise<string> {
    if (SINGLETONS.has(stage)) {
      const holder = this.p.nameOf(await leaseHolderPid(this.admin, this.p.keys, stage).catch(() => null));
      if (holder) return holder;
    }
    const names = processesOf(stage);
    return names[Math.floor(this.rand() * names.length)]!;
  }

  async inject(fault: Fault): Promise<void> {
    switch (fault.kind) {
      case 'kill':
        return this.kill();
      case 'pause':
        return this.pause();
      case 'drop':
        return this.drop(fault.stage!);
      case 'redis-restart':
        return this.redisRestart();
      case 'broker-outage':
        return this.brokerOutage();
    }
  }

  private async kill(): Promise<void> {
    const all = STAGES.flatMap(processesOf);
    const name = all[Math.floor(this.rand() * all.length)]!;
    await this.p.kill9(name);
    this.injected.kill++;
    await delay(Math.floor(this.rand() * 500));
    await this.p.restart(name);
    say(`kill -9 ${name}, restarted`);
  }

  private async pause(): Promise<void> {
    const singletons = [...SINGLETONS];
    const stage = singletons[Math.floor(this.rand() * singletons.length)]!;
    const name = await this.target(stage);
    const holdMs = Math.floor(this.opts.leaseMs * (1.5 + this.rand()));
    const child = this.p.child(name);
    child.pause();
    this.injected.pause++;
    await delay(holdMs);
    child.resume();
    say(`SIGSTOP ${name} for ${holdMs} ms, SIGCONT`);
  }

  private async drop(stage: Stage): Promise<void> {
    const name = await this.target(stage);
    const proxy = this.proxies.get(name)!;
    const command = stage === 'ingest' ? 'EVALSHA' : 'XREADGROUP';
    try {
      const dropped = await withTimeout(
        proxy.dropReplyTo(command, { nonEmpty: true }),
        DROP_WAIT_MS,
        `${name} got no ${command} reply with data within ${DROP_WAIT_MS} ms`,
      );
      this.injected.drop++;
      this.dropsPerStage[stage]!++;
      say(`dropped the ${command} reply to ${name} (${dropped.bytes} bytes, ${dropped.entries} entries)`);
    } catch (err) {
      proxy.disarm();
      throw new FaultNotInjected(String((err as Error).message));
    }
  }

  private async redisRestart(): Promise<void> {
    await this.redis.restart({ keepData: true });
    this.injected['redis-restart']++;
    say('Redis restarted with its AOF');
  }

  private async brokerOutage(): Promise<void> {
    const name = await this.target('emit');
    const emit = this.p.child(name);
    emit.pause();
    try {
      await kafkaDown(this.brokerPort);
      await delay(1000);
    } finally {
      emit.resume();
    }
    this.injected['broker-outage']++;
    await delay(this.opts.outageMs);
    await kafkaUp(this.brokerPort);
    say(`broker down for ${this.opts.outageMs} ms with ${name} paused at the start`);
  }

  /**
   * The faults, spread evenly over opts.seconds. A drop that found nothing to drop (the stage
   * read no data in time, e.g. stalled upstream) is tried again at the end, up to DROP_TRIES times.
   */
  async runFaults(): Promise<void> {
    const faults = schedule(this.opts, this.rand);
    const tries = new Map<Fault, number>();
    const started = performance.now();
    for (let i = 0; i < faults.length; i++) {
      const fault = faults[i]!;
      const due = started + (i * this.opts.seconds * 1000) / Math.max(1, faults.length);
      if (due > performance.now()) await delay(due - performance.now());
      try {
        await this.inject(fault);
      } catch (err) {
        if (!(err instanceof FaultNotInjected)) throw err;
        say(`not injected: ${err.message}`);
        tries.set(fault, (tries.get(fault) ?? 1) + 1);
        if (tries.get(fault)! <= DROP_TRIES) faults.push(fault);
      }
      await this.restartExited(true);
    }
    // Load runs for the whole time, however few the faults.
    const end = started + this.opts.seconds * 1000;
    if (end > performance.now()) await delay(end - performance.now());
  }

  /**
   * Starts again the processes that exited on their own, so the run goes on; while faults run
   * (`asProblem`) such an exit is a finding.
   */
  async restartExited(asProblem: boolean): Promise<void> {
    for (const name of STAGES.flatMap(processesOf)) {
      const child = this.p.child(name);
      if (!child.exit || child.exit.signal === 'SIGKILL') continue;
      if (asProblem)
        this.problems.push(
          `${name} exited on its own (${JSON.stringify(child.exit)}): ${child.output().slice(-1500)}`,
        );
      say(`${name} exited on its own (${JSON.stringify(child.exit)}); restarting it`);
      await this.p.restart(name);
    }
  }

  /**
   * Waits until every group has acknowledged everything and the topic has stopped growing (for
   * DRAIN_QUIET_MS). The topic's count is not the signal: duplicates can make up for missing
   * messages. Answers why not, when the time ran out.
   */
  async drain(): Promise<string | null> {
    const deadline = Date.now() + this.opts.drainMs;
    let last = -1;
    let quietSince = Date.now();
    for (;;) {
      const count = await topicCount(this.topic);
      if (count !== last) quietSince = Date.now();
      last = count;
      const why = (await this.p.notDrained().catch((err: Error) => err.message)) ?? null;
      if (!why && Date.now() - quietSince >= DRAIN_QUIET_MS) return null;
      if (Date.now() > deadline) return why ?? `the topic still grows (${count} messages)`;
      await delay(500);
    }
  }

  async verdict(roots: string[]): Promise<{ verdict: Verdict; messages: number }> {
    const events = this.events.slice(0, this.posted);
    const messages = await readTopic(this.topic, 120_000);
    // A message that breaks the contract (a root in two partitions, bad headers) is a violation;
    // the counts then treat the topic as holding nothing.
    const perRoot = await decodeTopic(messages).catch((err: Error) => {
      this.problems.push(`the topic breaks the contract: ${err.message}`);
      return new Map();
    });
    const validated = await readAll(this.admin, this.p.keys.stream(streams.validated));
    const ids = new Set(validated.flatMap((e) => e.optionalText('event_id') ?? []));
    const dead = await listDeadLetters(this.admin, this.p.keys);
    return { verdict: verify(roots, events, perRoot, ids, dead), messages: messages.length };
  }

  /**
   * Redis restarted empty: every door must answer 503 and some process log an error about lost
   * state; then `atlas recover`, when it exists. Answers what happened, one line.
   */
  async lostState(roots: string[]): Promise<string> {
    const help = await runAtlas(['--help'], {}, 60_000);
    const canRecover = /^\s+recover\b/m.test(help.stdout);
    const logsBefore = new Map(STAGES.flatMap(processesOf).map((n) => [n, this.p.child(n).logs.length]));
    await this.redis.restart({ keepData: false });
    say('Redis restarted without its data');
    const deadline = Date.now() + 30_000;
    let loud = { doors503: false, errorLog: '' };
    while (Date.now() < deadline && !(loud.doors503 && loud.errorLog)) {
      loud = await this.loudStop(logsBefore);
      await delay(500);
    }
    const found = `doors /ready 503: ${loud.doors503}; error log about lost state: ${loud.errorLog || 'none'}`;
    if (!loud.doors503 || !loud.errorLog) {
      this.problems.push(`no loud stop within 30 s after Redis lost its data (${found})`);
      return `no loud stop (${found})`;
    }
    if (!canRecover) return `loud stop (${found}); recovery skipped: atlas recover not available`;
    const recovered = await runAtlas(['recover'], { ...this.p.env, REDIS_URL: this.redis.url }, 300_000);
    if (recovered.code !== 0) {
      this.problems.push(`atlas recover exited ${recovered.code}: ${recovered.stderr.slice(-2000)}`);
      return `loud stop; atlas recover failed (exit ${recovered.code})`;
    }
    return `loud stop (${found}); atlas recover exited 0; ${await this.afterRecovery(roots)}`;
  }

  /**
   * A correct recovery: the source replays from its start (Redis's state before the loss is gone,
   * the way docs/OPERATIONS.md says), with more events after it. The topic then holds, per root,
   * the updates from before the loss and then those of the replay, numbered on without a gap or a
   * repeat, the last one the reference's final graph over every event.
   */
  private async afterRecovery(roots: string[]): Promise<string> {
    await this.restartExited(false);
    const before = this.events.slice(0, this.posted);
    const replay = this.events.slice(0, this.posted + RECOVERY_EVENTS);
    this.stopPosting = false;
    for (const event of replay) await this.postDurably(event);
    this.posted = replay.length;
    const undrained = await this.drain();
    const perRoot = await decodeTopic(await readTopic(this.topic, 120_000));
    const wrong = verifyAcrossRecovery(roots, before, replay, perRoot);
    if (undrained) wrong.push(`not drained: ${undrained}`);
    this.problems.push(...wrong.map((w) => `after atlas recover: ${w}`));
    return wrong.length === 0
      ? `source replayed from its start (${replay.length} events, ${RECOVERY_EVENTS} new): numbers continue, topic correct`
      : `topic wrong afterwards`;
  }

  private async loudStop(logsBefore: Map<string, number>): Promise<{ doors503: boolean; errorLog: string }> {
    const doors = await Promise.all(
      processesOf('ingest').map(async (name) => {
        const url = this.p.urlOf(name);
        return url ? (await request(`${url}/ready`).catch(() => ({ status: 0 }))).status : 0;
      }),
    );
    let errorLog = '';
    for (const [name, before] of logsBefore) {
      const line = this.p
        .child(name)
        .logs.slice(before)
        .find((l) => Number(l.level) >= 50 && /lost/i.test(JSON.stringify(l)));
      if (line) errorLog = `${name}: ${String(line.msg)}`;
    }
    return { doors503: doors.every((s) => s === 503), errorLog };
  }

  async close(): Promise<void> {
    await this.p?.stop();
    for (const proxy of this.proxies.values()) await proxy.stop();
    this.admin?.disconnect();
    await this.redis?.stop();
    await deleteTopics([this.topic]).catch(() => undefined);
  }
}

/** Runs the whole chaos run and answers the report; `report.violations` empty means it passed. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const started = performance.now();
  const roots = 3;
  // Enough events for the whole run at the set pace, with room for the drain.
  const poolSize = Math.ceil((opts.seconds + 600) * opts.eventsPerS);
  const pool = churnScenario({ seed: opts.seed, events: poolSize, roots, tag: uniquePrefix('chaos') });
  const lock = await lockBroker('exclusive', brokerLockFile());
  const run = new ChaosRun(opts);
  try {
    await run.start(pool.events, pool.roots);
    say(`pipeline up: ${STAGES.flatMap(processesOf).length} processes, each through its own proxy`);
    const posting = run.postAll();
    await run.runFaults();
    run.stopPosting = true;
    await posting;
    const events = pool.events.slice(0, run.posted);
    const causes = emissionCauses(pool.roots, events);
    const expected = pool.roots.reduce((s, r) => s + causes.get(r)!.length, 0);
    say(`faults done; ${run.posted} events posted, ${expected} messages expected; draining`);
    const undrained = await run.drain();
    const { verdict, messages } = await run.verdict(pool.roots);
    const lostState = opts.lostState
      ? await run.lostState(pool.roots)
      : 'not run (CHAOS_LOST_STATE=1 runs it)';
    const violations = [...verdict.violations, ...run.problems, ...shortfalls(opts, run)];
    if (undrained) violations.push(`not drained after ${opts.drainMs} ms: ${undrained}`);
    return {
      options: opts,
      injected: run.injected,
      dropsPerStage: run.dropsPerStage,
      events: run.posted,
      messages,
      verdict,
      undrained,
      lostState,
      violations,
      seconds: Math.round((performance.now() - started) / 1000),
    };
  } finally {
    await run.close();
    await kafkaUp(run.brokerPort).catch(() => undefined);
    await lock.release();
  }
}

/** Faults asked for and not injected: a run that did less than it says is a failed run. */
function shortfalls(opts: ChaosOptions, run: ChaosRun): string[] {
  const out: string[] = [];
  const want: Record<FaultKind, number> = {
    kill: opts.kills,
    pause: opts.pauses,
    drop: opts.dropsPerStage * STAGES.length,
    'redis-restart': opts.redisRestarts,
    'broker-outage': opts.brokerOutages,
  };
  for (const [kind, n] of Object.entries(want) as [FaultKind, number][])
    if (run.injected[kind] < n) out.push(`${kind}: ${run.injected[kind]} of ${n} injected`);
  for (const stage of STAGES)
    if (run.dropsPerStage[stage]! < opts.dropsPerStage)
      out.push(`drop at ${stage}: ${run.dropsPerStage[stage]} of ${opts.dropsPerStage} injected`);
  return out;
}

/** The summary table and one JSON line, for people and for scripts. */
export function printReport(report: ChaosReport): void {
  const { verdict } = report;
  const rows = [
    ['kill -9', report.injected.kill],
    ['SIGSTOP/SIGCONT of a singleton', report.injected.pause],
    [
      'dropped reply + reset',
      `${report.injected.drop} (${Object.entries(report.dropsPerStage)
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')})`,
    ],
    ['Redis restart with AOF', report.injected['redis-restart']],
    ['broker outage, emit paused', report.injected['broker-outage']],
  ];
  const lines = [
    '',
    `chaos: ${report.events} events, ${report.messages} messages, ${report.seconds} s, seed ${report.options.seed}`,
    ...rows.map(([k, v]) => `  ${String(k).padEnd(32)} ${v}`),
    `  ${'pipeline drained at the end'.padEnd(32)} ${report.undrained === null ? 'yes' : `no: ${report.undrained}`}`,
    `  ${'lost (missing from the topic)'.padEnd(32)} ${verdict.lost}`,
    `  ${'duplicated'.padEnd(32)} ${verdict.duplicated}`,
    `  ${'out of order'.padEnd(32)} ${verdict.outOfOrder}`,
    `  ${'carrying another event’s update'.padEnd(32)} ${verdict.wrongMeta}`,
    `  ${'events not validated nor in DLQ'.padEnd(32)} ${verdict.missingEvents.length}`,
    `  ${'dead letters'.padEnd(32)} ${JSON.stringify(verdict.deadLetters)}`,
    `  ${'lost state'.padEnd(32)} ${report.lostState}`,
    ...verdict.roots.map(
      (r) =>
        `  root ${r.root.slice(0, 8)}…  expected ${r.expected}, published ${r.published}, lost ${r.lost}, duplicated ${r.duplicated}, out of order ${r.outOfOrder}, final graph ${r.finalGraphOk ? 'ok' : 'WRONG'}`,
    ),
    report.violations.length === 0 ? 'chaos: PASS' : `chaos: FAIL\n  - ${report.violations.join('\n  - ')}`,
  ];
  console.log(lines.join('\n'));
  const { roots: perRoot, missingEvents, ...totals } = verdict;
  console.log(
    JSON.stringify({
      chaos: report.violations.length === 0 ? 'pass' : 'fail',
      injected: report.injected,
      dropsPerStage: report.dropsPerStage,
      events: report.events,
      messages: report.messages,
      ...totals,
      missingEvents: missingEvents.length,
      perRoot,
      undrained: report.undrained,
      lostState: report.lostState,
      violations: report.violations,
      options: report.options,
      seconds: report.seconds,
    }),
  );
}

/** The chaos run as one vitest test: prints the report, fails on any violation. */
export function chaosTest(title: string, opts: ChaosOptions): void {
  afterAll(() => killChildren());
  it(
    title,
    async () => {
      const report = await runChaos(opts);
      printReport(report);
      expect(report.violations).toEqual([]);
    },
    (opts.seconds + 900) * 1000 + opts.drainMs,
  );
}
