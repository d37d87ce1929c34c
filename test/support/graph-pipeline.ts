/**
 * The real graph pipeline as child processes (`node ops/cli/atlas.ts run <stages…>`) on one key
 * prefix, for the tests under test/graph: start / kill -9 / restart processes (PipelineProcesses),
 * post events over HTTP, wait until the pipeline is idle, and read what it produced the way an
 * operator would (`atlas canonical show --json`, the streams, the DLQ, the transitive checkpoint).
 */
import type { Redis } from 'ioredis';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { type DeadLetter, listDeadLetters } from '../../pipeline/dlq.ts';
import { type Keys, keys as keysFor } from '../../pipeline/keys.ts';
import { streams } from '../../stages/streams.ts';
import { DeltaReceiver, type GraphDelta } from '../../stages/topology/graph-delta.ts';
import type { GraphWire, JsonTreeNode } from '../../stages/topology/graph-wire.ts';
import { checkpointKeys, loadState } from '../../stages/transitive/checkpoint.ts';
import type { Envelope } from './events.ts';
import { delay, eventually } from './eventually.ts';
import type { FinalGraph, PlainNode } from './graph-scenario.ts';
import { postJson } from './http.ts';
import { leaseHolderPid, PipelineProcesses, unfinishedLink } from './pipeline-processes.ts';
import { type Child, runAtlas } from './processes.ts';
import { readAll } from './streams.ts';

export interface Emission {
  id: string;
  root: string;
  sequence_number: number;
  event_seq: number;
  hash: string;
  graph: GraphWire;
}

export interface ShownGraph extends FinalGraph {
  sequence_number: number;
}

/** A CLI run takes about a second; on a loaded 2-core machine many times that. */
export const CLI_TIMEOUT_MS = 60_000;

/** `atlas canonical show --json` leaves topic_id out on non-topic edges; the fixtures say null. */
export function plainTree(node: JsonTreeNode): PlainNode {
  return {
    space_id: node.space_id,
    edge: node.edge,
    topic_id: node.topic_id ?? null,
    children: node.children.map(plainTree),
  };
}

export class GraphPipeline extends PipelineProcesses {
  readonly redis: Redis;
  readonly prefix: string;
  readonly keys: Keys;
  readonly roots: string[];

  constructor(redis: Redis, prefix: string, roots: string[], env: Record<string, string> = {}) {
    super({
      ATLAS_PREFIX: prefix,
      ATLAS_ROOT_SPACE_ID: roots.join(','),
      LOG_LEVEL: 'warn',
      ...env,
    });
    this.redis = redis;
    this.prefix = prefix;
    this.keys = keysFor(prefix);
    this.roots = roots;
  }

  /** Starts `atlas run <stages…>` as process `name` (see PipelineProcesses.start). */
  spawn(name: string, stages: string[], env: Record<string, string> = {}): Promise<Child> {
    return this.start(name, ['run', ...stages], env);
  }

  /**
   * Posts events in order: one POST /events each, or POST /events/batch in chunks. Each request
   * waits for the previous one's answer (so the global seq follows the given order). `holdBack`
   * is polled before each request and holds posting while it answers a reason (see behind()).
   */
  async post(
    events: Envelope[],
    opts: { mode: 'single' | 'batch'; batchSize?: number; holdBack?: () => Promise<string | null> } = {
      mode: 'single',
    },
  ): Promise<void> {
    const size = opts.mode === 'single' ? 1 : (opts.batchSize ?? events.length);
    for (let i = 0; i < events.length; i += size) {
      const holdBack = opts.holdBack;
      if (holdBack)
        await eventually(
          async () => {
            const why = await holdBack();
            if (why) throw new Error(`posting held back for too long: ${why}`);
            return true;
          },
          60_000,
          10,
        );
      const chunk = events.slice(i, i + size);
      const body = opts.mode === 'single' ? chunk[0] : chunk;
      const path = opts.mode === 'single' ? '/events' : '/events/batch';
      for (let attempt = 0; ; attempt++) {
        const answer = await postJson(`${this.doorUrl()}${path}`, body);
        if (answer.status === 200 || answer.status === 202) break;
        if ((answer.status === 429 || answer.status === 503) && attempt < 100) {
          await delay(50);
          continue;
        }
        throw new Error(`POST ${path} answered ${answer.status}: ${answer.text}`);
      }
    }
  }

  /**
   * A holdBack for post(): a reason while the transitive stage is more than `events` accepted
   * events behind, or (when given) the canonical stage more than `outputs` entries behind.
   */
  behind(limits: { events: number; outputs?: number }): () => Promise<string | null> {
    return async () => {
      const lag = (await this.acceptedCount()) - (await this.transitiveDone());
      if (lag > limits.events) return `transitive is ${lag} events behind`;
      if (limits.outputs === undefined) return null;
      const backlog =
        (await this.redis.xlen(this.keys.stream(streams.transitive))) - (await this.canonicalDone());
      return backlog > limits.outputs ? `canonical is ${backlog} entries behind` : null;
    };
  }

  /** Events accepted so far (the global seq counter; redrives take numbers from it too). */
  async acceptedCount(): Promise<number> {
    return Number((await this.redis.get(this.keys.seq)) ?? 0);
  }

  /** How many seqs the transitive stage has passed (its order checkpoint minus one). */
  async transitiveDone(): Promise<number> {
    const next = await this.redis.hget(this.keys.of('order', 'transitive'), '');
    return next === null ? 0 : Number(next) - 1;
  }

  /** Entries of a stage's input read but not yet acknowledged (its consumers' PELs). */
  async pending(stage: 'validate' | 'transitive' | 'canonical'): Promise<number> {
    const input = { validate: streams.ingest, transitive: streams.validated, canonical: streams.transitive }[
      stage
    ];
    try {
      const summary = (await this.redis.xpending(this.keys.stream(input), stage)) as [number, ...unknown[]];
      return Number(summary[0]);
    } catch {
      return 0;
    }
  }

  /** How many `{prefix}:transitive` entries the canonical stage has acknowledged. */
  async canonicalDone(): Promise<number> {
    let raw: unknown[];
    try {
      raw = (await this.redis.xinfo('GROUPS', this.keys.stream(streams.transitive))) as unknown[];
    } catch {
      return 0;
    }
    for (const g of raw as unknown[][]) {
      const get = (k: string): unknown => g[g.indexOf(k) + 1];
      if (get('name') === 'canonical') return Number(get('entries-read') ?? 0) - Number(get('pending'));
    }
    return 0;
  }

  /** null when idle: every accepted event passed transitive and every group read and acked all. */
  async notIdle(): Promise<string | null> {
    const accepted = await this.acceptedCount();
    const done = await this.transitiveDone();
    if (done !== accepted) return `transitive has passed ${done} of ${accepted} events`;
    return unfinishedLink(this.redis, this.keys, [
      [streams.ingest, 'validate'],
      [streams.validated, 'transitive'],
      [streams.transitive, 'canonical'],
    ]);
  }

  async waitIdle(timeoutMs = 60_000): Promise<void> {
    await this.waitUntil('idle', () => this.notIdle(), timeoutMs, 25);
  }

  /** `atlas canonical show <root> --json`, run as a process, normalised to the fixtures' shape. */
  async show(root: string): Promise<ShownGraph> {
    const { code, stdout, stderr } = await runAtlas(
      ['canonical', 'show', root, '--json'],
      { ATLAS_PREFIX: this.prefix, LOG_LEVEL: 'warn' },
      CLI_TIMEOUT_MS,
    );
    if (code !== 0) throw new Error(`atlas canonical show ${root} exited ${code}: ${stderr}`);
    const shown = JSON.parse(stdout) as {
      root_id: string;
      sequence_number: number;
      canonical_space_ids: string[];
      tree: JsonTreeNode;
    };
    return {
      root_id: shown.root_id,
      sequence_number: shown.sequence_number,
      canonical_space_ids: shown.canonical_space_ids,
      tree: plainTree(shown.tree),
    };
  }

  /** The entries of a stage's output stream (claim-checked fields resolved). */
  async entries(stream: string): Promise<Array<Record<string, string> & { id: string }>> {
    const all = await readAll(this.redis, this.keys.stream(stream));
    const failed = await resolveBlobs(this.redis, this.keys, all);
    if (failed.size > 0) throw new Error(`unreadable blobs in ${stream}`);
    return all.map((e) => ({ ...e.toJSON(), id: e.id }));
  }

  /**
   * The `{prefix}:canonical` stream, per root in stream order, each emission's delta applied to
   * the one before (as serialize does) to give its whole graph.
   */
  async emissions(): Promise<Map<string, Emission[]>> {
    const out = new Map<string, Emission[]>(this.roots.map((r) => [r, []]));
    const graphs = new DeltaReceiver();
    for (const e of await this.entries(streams.canonical)) {
      const list = out.get(e.root!) ?? [];
      graphs.apply(JSON.parse(e.delta!) as GraphDelta);
      list.push({
        id: e.id,
        root: e.root!,
        sequence_number: Number(e.sequence_number),
        event_seq: Number(e.event_seq),
        hash: e.hash!,
        graph: graphs.wire(e.root!),
      });
      out.set(e.root!, list);
    }
    return out;
  }

  /** event_seq of each `{prefix}:transitive` output, per root in stream order. */
  async transitiveOutputs(): Promise<Map<string, number[]>> {
    const out = new Map<string, number[]>(this.roots.map((r) => [r, []]));
    for (const e of await this.entries(streams.transitive)) {
      if (e.skip !== undefined) continue;
      out.set(e.root!, [...(out.get(e.root!) ?? []), Number(e.event_seq)]);
    }
    return out;
  }

  deadLetters(): Promise<DeadLetter[]> {
    return listDeadLetters(this.redis, this.keys);
  }

  /** The transitive checkpoint, in the shape of Expectation.state. */
  async checkpoint(): Promise<{ topics: Record<string, string>; edges: string[]; topicEdges: string[] }> {
    const s = await loadState(this.redis, checkpointKeys(this.keys));
    return {
      topics: Object.fromEntries(s.topics),
      edges: s.edges.map((e) => e.join('|')).sort(),
      topicEdges: s.topicEdges.map((e) => e.join('|')).sort(),
    };
  }

  /** The pid in the consumer name of a singleton stage's lease holder (null when the lease is free). */
  leaseHolderPid(stage: string): Promise<number | null> {
    return leaseHolderPid(this.redis, this.keys, stage);
  }

  /** Name of the process that holds a singleton stage's lease. */
  async leaseHolder(stage: string): Promise<string | null> {
    return this.nameOf(await this.leaseHolderPid(stage));
  }
}

/** Sequence numbers 1..n. */
export function dense(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

/** Whether a list of numbers strictly increases (no repeats, no going back). */
export function strictlyIncreasing(xs: number[]): boolean {
  return xs.every((x, i) => i === 0 || x > xs[i - 1]!);
}
