/**
 * The whole pipeline — all six stages, publishing to the real Kafka broker — as child processes
 * (`node ops/cli/atlas.ts up`, or `atlas run <stages…>` per process), on one key prefix and one
 * Kafka topic of its own: start / kill -9 / restart processes, post events over HTTP (optionally
 * with a W3C traceparent per request), ask /ready, and look at the Redis side of the emit stage.
 */
import type { Redis } from 'ioredis';
import { backlog, groupsOf } from '../../pipeline/backlog.ts';
import { type DeadLetter, listDeadLetters } from '../../pipeline/dlq.ts';
import { type Keys, keys as keysFor, streams } from '../../pipeline/keys.ts';
import { KAFKA_BROKER } from './e2e-kafka.ts';
import type { Envelope } from './events.ts';
import { delay, eventually } from './eventually.ts';
import { type Answer, postJson, request } from './http.ts';
import { type Child, spawnAtlas } from './processes.ts';
import { freePort } from './redis.ts';
import { readAll } from './streams.ts';

interface Proc {
  child: Child;
  args: string[];
  env: Record<string, string>;
  url?: string;
}

export interface PostOptions {
  mode?: 'single' | 'batch';
  batchSize?: number;
  /** traceparent header of the request that carries event i (single) or starts at event i (batch). */
  traceparent?: (i: number) => string;
}

/** A W3C traceparent whose trace id names a number (e.g. the event's index). */
export function traceparentFor(n: number, tag = 0xe2e): string {
  return `00-${tag.toString(16).padStart(8, '0')}${n.toString(16).padStart(24, '0')}-${(n + 1).toString(16).padStart(16, '0')}-01`;
}

export class E2EPipeline {
  readonly redis: Redis;
  readonly prefix: string;
  readonly keys: Keys;
  readonly topic: string;
  readonly roots: string[];
  /** Settings every process of this pipeline gets. */
  readonly env: Record<string, string>;
  private readonly procs = new Map<string, Proc>();
  private nextDoor = 0;

  constructor(
    redis: Redis,
    opts: { prefix: string; topic: string; roots: string[]; env?: Record<string, string> },
  ) {
    this.redis = redis;
    this.prefix = opts.prefix;
    this.keys = keysFor(opts.prefix);
    this.topic = opts.topic;
    this.roots = opts.roots;
    this.env = {
      // Like production: vitest sets NODE_ENV=test, and kafkajs changes its retry defaults for it.
      NODE_ENV: 'production',
      ATLAS_PREFIX: opts.prefix,
      ATLAS_ROOT_SPACE_ID: opts.roots.join(','),
      KAFKA_BROKER,
      KAFKA_TOPIC_CANONICAL: opts.topic,
      LOG_LEVEL: 'warn',
      ATLAS_BLOCK_MS: '200',
      ...opts.env,
    };
  }

  /** `atlas up`: all six stages in one process. */
  up(name = 'all', env: Record<string, string> = {}): Promise<Child> {
    return this.spawn(name, ['up'], env);
  }

  /** `atlas run <stages…>` as process `name`. */
  run(name: string, stages: string[], env: Record<string, string> = {}): Promise<Child> {
    return this.spawn(name, ['run', ...stages], env);
  }

  /**
   * Starts `atlas <args>`. A process with the door gets a free port and this waits until it
   * answers /health (a port lost to a race is retried).
   */
  async spawn(name: string, args: string[], env: Record<string, string> = {}): Promise<Child> {
    const existing = this.procs.get(name);
    if (existing && !existing.child.exit) throw new Error(`process ${name} is running already`);
    const door = args[0] === 'up' || args.includes('ingest');
    for (let attempt = 0; ; attempt++) {
      const port = door ? await freePort() : 0;
      const child = spawnAtlas(args, {
        ...this.env,
        ...env,
        ...(port ? { ATLAS_HTTP_PORT: String(port) } : {}),
      });
      const proc: Proc = { child, args, env };
      this.procs.set(name, proc);
      if (!port) return child;
      proc.url = `http://127.0.0.1:${port}`;
      try {
        await eventually(
          async () => {
            if (child.exit)
              throw new Error(`${name} exited: ${JSON.stringify(child.exit)}\n${child.output()}`);
            return (await request(`${proc.url}/health`)).status === 200;
          },
          30_000,
          50,
        );
        return child;
      } catch (err) {
        if (attempt < 3 && /EADDRINUSE/.test(child.output())) continue;
        throw err;
      }
    }
  }

  child(name: string): Child {
    const proc = this.procs.get(name);
    if (!proc) throw new Error(`no process ${name}`);
    return proc.child;
  }

  async kill9(name: string): Promise<void> {
    await this.child(name).kill9();
  }

  /** Starts process `name` again with the arguments and settings it had. */
  async restart(name: string): Promise<Child> {
    const proc = this.procs.get(name);
    if (!proc) throw new Error(`no process ${name}`);
    if (!proc.child.exit) await proc.child.kill9();
    return this.spawn(name, proc.args, proc.env);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.child.kill9()));
  }

  /** Processes that exited without being killed by the test. */
  crashes(): string[] {
    return [...this.procs.entries()]
      .filter(([, p]) => p.child.exit && p.child.exit.signal !== 'SIGKILL')
      .map(([name, p]) => `${name}: ${JSON.stringify(p.child.exit)}\n${p.child.output()}`);
  }

  /** Output of every process (for failure messages). */
  output(): string {
    return [...this.procs.entries()].map(([name, p]) => `=== ${name}\n${p.child.output()}`).join('\n');
  }

  doorUrl(): string {
    const doors = [...this.procs.values()].flatMap((p) => (p.url && !p.child.exit ? [p.url] : []));
    if (doors.length === 0) throw new Error('no ingest process is running');
    return doors[this.nextDoor++ % doors.length]!;
  }

  /**
   * Posts events in order, each request after the previous one's answer (so the global seq
   * follows the given order); 429/503 answers are retried.
   */
  async post(events: Envelope[], opts: PostOptions = {}): Promise<void> {
    const size = opts.mode === 'batch' ? (opts.batchSize ?? events.length) : 1;
    for (let i = 0; i < events.length; i += size) {
      await this.postOne(events.slice(i, i + size), opts.mode === 'batch', opts.traceparent?.(i));
    }
  }

  async postOne(chunk: Envelope[], batch: boolean, traceparent?: string): Promise<Answer> {
    const path = batch ? '/events/batch' : '/events';
    const headers: Record<string, string> = traceparent ? { traceparent } : {};
    for (let attempt = 0; ; attempt++) {
      const answer = await postJson(`${this.doorUrl()}${path}`, batch ? chunk : chunk[0], headers);
      if (answer.status === 200 || answer.status === 202) return answer;
      if ((answer.status === 429 || answer.status === 503) && attempt < 200) {
        await delay(50);
        continue;
      }
      throw new Error(`POST ${path} answered ${answer.status}: ${answer.text}`);
    }
  }

  /** GET /ready of a door. */
  ready(): Promise<Answer> {
    return request(`${this.doorUrl()}/ready`);
  }

  /** Entries of `{prefix}:serialized` the emit stage has not acknowledged (unread + pending). */
  emitBacklog(): Promise<number> {
    return backlog(this.redis, this.keys.stream(streams.serialized));
  }

  /** Every group of every stage stream has read and acknowledged everything. */
  async notDrained(): Promise<string | null> {
    const links: Array<[string, string]> = [
      [streams.ingest, 'validate'],
      [streams.validated, 'transitive'],
      [streams.transitive, 'canonical'],
      [streams.canonical, 'serialize'],
      [streams.serialized, 'emit'],
    ];
    for (const [name, group] of links) {
      const stream = this.keys.stream(name);
      const g = (await groupsOf(this.redis, stream)).find((x) => x.name === group);
      if (!g) return `no group ${group} on ${stream} yet`;
      if (g.pending > 0) return `${group}: ${g.pending} pending`;
      if (g.lag === null) {
        const [last] = (await this.redis.xrevrange(stream, '+', '-', 'COUNT', 1)) as [string, string[]][];
        if (last && last[0] !== g.lastDeliveredId) return `${group}: unread entries`;
      } else if (g.lag > 0) return `${group}: lag ${g.lag}`;
    }
    return null;
  }

  async waitDrained(timeoutMs = 60_000): Promise<void> {
    await eventually(
      async () => {
        const crashed = this.crashes();
        if (crashed.length > 0) throw new Error(`a process crashed:\n${crashed.join('\n')}`);
        const why = await this.notDrained();
        if (why) throw new Error(`pipeline not drained: ${why}`);
        return true;
      },
      timeoutMs,
      50,
    );
  }

  /** Where the emit stage's order stands: root → next sequence_number it will publish. */
  async emitOrder(): Promise<Map<string, number>> {
    const saved = await this.redis.hgetall(this.keys.of('order', 'emit'));
    return new Map(Object.entries(saved).map(([root, next]) => [root, Number(next)]));
  }

  /** sequence_number of each `{prefix}:canonical` entry (the canonical stage's emissions), per root in stream order. */
  async canonicalSequences(): Promise<Map<string, number[]>> {
    const out = new Map<string, number[]>(this.roots.map((r) => [r, []]));
    for (const e of await readAll(this.redis, this.keys.stream(streams.canonical))) {
      const root = e.optionalText('root');
      const seq = e.optionalText('sequence_number');
      if (root === undefined || seq === undefined) continue;
      out.set(root, [...(out.get(root) ?? []), Number(seq)]);
    }
    return out;
  }

  deadLetters(): Promise<DeadLetter[]> {
    return listDeadLetters(this.redis, this.keys);
  }
}
