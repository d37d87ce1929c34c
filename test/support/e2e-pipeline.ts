/**
 * The whole pipeline — all six stages, publishing to the real Kafka broker — as child processes
 * (`node ops/cli/atlas.ts up`, or `atlas run <stages…>` per process), on one key prefix and one
 * Kafka topic of its own: start / kill -9 / restart processes (PipelineProcesses), post events
 * over HTTP (optionally with a W3C traceparent per request), ask /ready, and look at the Redis
 * side of the emit stage.
 */
import type { Redis } from 'ioredis';
import { backlog } from '../../pipeline/backlog.ts';
import { type DeadLetter, listDeadLetters } from '../../pipeline/dlq.ts';
import { type Keys, keys as keysFor } from '../../pipeline/keys.ts';
import { streams } from '../../stages/streams.ts';
import { KAFKA_BROKER } from './e2e-kafka.ts';
import type { Envelope } from './events.ts';
import { delay } from './eventually.ts';
import { type Answer, postJson, request } from './http.ts';
import { leaseHolderPid, PipelineProcesses, unfinishedLink } from './pipeline-processes.ts';
import type { Child } from './processes.ts';
import { readAll } from './streams.ts';

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

export class E2EPipeline extends PipelineProcesses {
  readonly redis: Redis;
  readonly prefix: string;
  readonly keys: Keys;
  readonly topic: string;
  readonly roots: string[];

  constructor(
    redis: Redis,
    opts: { prefix: string; topic: string; roots: string[]; env?: Record<string, string> },
  ) {
    super({
      // Like production: vitest sets NODE_ENV=test, and kafkajs changes its retry defaults for it.
      NODE_ENV: 'production',
      ATLAS_PREFIX: opts.prefix,
      ATLAS_ROOT_SPACE_ID: opts.roots.join(','),
      KAFKA_BROKER,
      KAFKA_TOPIC_CANONICAL: opts.topic,
      LOG_LEVEL: 'warn',
      ATLAS_BLOCK_MS: '200',
      ...opts.env,
    });
    this.redis = redis;
    this.prefix = opts.prefix;
    this.keys = keysFor(opts.prefix);
    this.topic = opts.topic;
    this.roots = opts.roots;
  }

  /** `atlas up`: all six stages in one process. */
  up(name = 'all', env: Record<string, string> = {}): Promise<Child> {
    return this.spawn(name, ['up'], env);
  }

  /** `atlas run <stages…>` as process `name`. */
  run(name: string, stages: string[], env: Record<string, string> = {}): Promise<Child> {
    return this.spawn(name, ['run', ...stages], env);
  }

  /** Starts `atlas <args>` as process `name` (see PipelineProcesses.start). */
  spawn(name: string, args: string[], env: Record<string, string> = {}): Promise<Child> {
    return this.start(name, args, env);
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

  /** GET /metrics of a door (with `atlas up`, the whole pipeline's process). */
  async metrics(): Promise<string> {
    return (await request(`${this.doorUrl()}/metrics`)).text;
  }

  /** Entries of `{prefix}:serialized` the emit stage has not acknowledged (unread + pending). */
  emitBacklog(): Promise<number> {
    return backlog(this.redis, this.keys.stream(streams.serialized));
  }

  /** Every group of every stage stream has read and acknowledged everything. */
  async notDrained(): Promise<string | null> {
    return unfinishedLink(this.redis, this.keys, [
      [streams.ingest, 'validate'],
      [streams.validated, 'transitive'],
      [streams.transitive, 'canonical'],
      [streams.canonical, 'serialize'],
      [streams.serialized, 'emit'],
    ]);
  }

  async waitDrained(timeoutMs = 60_000): Promise<void> {
    await this.waitUntil('drained', () => this.notDrained(), timeoutMs, 50);
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

  /** Name of the process that holds a singleton stage's lease. */
  async leaseHolder(stage: string): Promise<string | null> {
    return this.nameOf(await leaseHolderPid(this.redis, this.keys, stage));
  }

  deadLetters(): Promise<DeadLetter[]> {
    return listDeadLetters(this.redis, this.keys);
  }
}
