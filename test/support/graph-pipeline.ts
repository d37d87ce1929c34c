/**
 * The real graph pipeline as child processes (`node ops/cli/atlas.ts run <stages…>`) on one key
 * prefix, for the tests under test/graph: start / kill -9 / restart processes, post events over
 * HTTP, wait until the pipeline is idle, and read what it produced the way an operator would
 * (`atlas canonical show --json`, the streams, the DLQ, the transitive checkpoint).
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Redis } from 'ioredis';
import { groupsOf } from '../../pipeline/backlog.ts';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { type DeadLetter, listDeadLetters } from '../../pipeline/dlq.ts';
import { type Keys, keys as keysFor, streams } from '../../pipeline/keys.ts';
import type { GraphWire, JsonTreeNode } from '../../stages/topology/graph-wire.ts';
import { checkpointKeys, loadState } from '../../stages/transitive/checkpoint.ts';
import type { Envelope } from './events.ts';
import { delay, eventually } from './eventually.ts';
import type { FinalGraph, PlainNode } from './graph-scenario.ts';
import { postJson, request } from './http.ts';
import { type Child, runAtlas, spawnAtlas } from './processes.ts';
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

interface Proc {
  child: Child;
  stages: string[];
  env: Record<string, string>;
  url?: string;
}

/** `atlas canonical show --json` leaves topic_id out on non-topic edges; the fixtures say null. */
export function plainTree(node: JsonTreeNode): PlainNode {
  return {
    space_id: node.space_id,
    edge: node.edge,
    topic_id: node.topic_id ?? null,
    children: node.children.map(plainTree),
  };
}

export class GraphPipeline {
  readonly redis: Redis;
  readonly prefix: string;
  readonly keys: Keys;
  readonly roots: string[];
  /** Settings every process of this pipeline gets. */
  readonly env: Record<string, string>;
  private readonly procs = new Map<string, Proc>();
  private nextDoor = 0;

  constructor(redis: Redis, prefix: string, roots: string[], env: Record<string, string> = {}) {
    this.redis = redis;
    this.prefix = prefix;
    this.keys = keysFor(prefix);
    this.roots = roots;
    this.env = {
      ATLAS_PREFIX: prefix,
      ATLAS_ROOT_SPACE_ID: roots.join(','),
      LOG_LEVEL: 'warn',
      ...env,
    };
  }

  /**
   * Starts `atlas run <stages…>` as process `name`. With the ingest stage it gets a free port
   * and this waits until the door answers /health — from this process, not another one that
   * took the port meanwhile (a door that lost its port exits; it is retried on another).
   */
  async spawn(name: string, stages: string[], env: Record<string, string> = {}): Promise<Child> {
    const existing = this.procs.get(name);
    if (existing && !existing.child.exit) throw new Error(`process ${name} is running already`);
    for (let attempt = 0; ; attempt++) {
      const port = stages.includes('ingest') ? await doorPort() : 0;
      const child = spawnAtlas(['run', ...stages], {
        ...this.env,
        ...env,
        ...(port ? { ATLAS_HTTP_PORT: String(port) } : {}),
      });
      const proc: Proc = { child, stages, env };
      this.procs.set(name, proc);
      if (!port) return child;
      proc.url = `http://127.0.0.1:${port}`;
      try {
        await eventually(
          async () => {
            if (child.exit)
              throw new Error(`${name} exited: ${JSON.stringify(child.exit)}\n${child.output()}`);
            if ((await request(`${proc.url}/health`)).status !== 200) return false;
            return (await listensOn(child.pid, port)) !== false;
          },
          60_000,
          50,
        );
        return child;
      } catch (err) {
        if (attempt < 5 && /EADDRINUSE/.test(child.output())) continue;
        throw err;
      }
    }
  }

  child(name: string): Child {
    const proc = this.procs.get(name);
    if (!proc) throw new Error(`no process ${name}`);
    return proc.child;
  }

  /** kill -9 of process `name`; resolves once it is gone. */
  async kill9(name: string): Promise<void> {
    await this.child(name).kill9();
  }

  /** Starts process `name` again with the stages and settings it had. */
  async restart(name: string): Promise<Child> {
    const proc = this.procs.get(name);
    if (!proc) throw new Error(`no process ${name}`);
    if (!proc.child.exit) await proc.child.kill9();
    return this.spawn(name, proc.stages, proc.env);
  }

  /** kill -9 of every process of this pipeline. */
  async stop(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.child.kill9()));
  }

  /** Failures of processes that exited without being killed by the test. */
  crashes(): string[] {
    return [...this.procs.entries()]
      .filter(([, p]) => p.child.exit && p.child.exit.signal !== 'SIGKILL')
      .map(([name, p]) => `${name}: ${JSON.stringify(p.child.exit)}\n${p.child.output()}`);
  }

  private doors(): string[] {
    return [...this.procs.values()].flatMap((p) => (p.url && !p.child.exit ? [p.url] : []));
  }

  /** A door, round-robin over the running ones. */
  private door(): string {
    const doors = this.doors();
    if (doors.length === 0) throw new Error('no ingest process is running');
    return doors[this.nextDoor++ % doors.length]!;
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
        const answer = await postJson(`${this.door()}${path}`, body);
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
    const links: Array<[string, string]> = [
      [streams.ingest, 'validate'],
      [streams.validated, 'transitive'],
      [streams.transitive, 'canonical'],
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

  async waitIdle(timeoutMs = 60_000): Promise<void> {
    await eventually(
      async () => {
        const crashed = this.crashes();
        if (crashed.length > 0) throw new Error(`a process crashed:\n${crashed.join('\n')}`);
        const why = await this.notIdle();
        if (why) throw new Error(`pipeline not idle: ${why}`);
        return true;
      },
      timeoutMs,
      25,
    );
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

  /** The `{prefix}:canonical` stream, per root in stream order. */
  async emissions(): Promise<Map<string, Emission[]>> {
    const out = new Map<string, Emission[]>(this.roots.map((r) => [r, []]));
    for (const e of await this.entries(streams.canonical)) {
      const list = out.get(e.root!) ?? [];
      list.push({
        id: e.id,
        root: e.root!,
        sequence_number: Number(e.sequence_number),
        event_seq: Number(e.event_seq),
        hash: e.hash!,
        graph: JSON.parse(e.graph!) as GraphWire,
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
  async leaseHolderPid(stage: string): Promise<number | null> {
    const holder = await this.redis.get(`${this.keys.of('lease', stage)}:holder`);
    const pid = holder?.match(/-(\d+)-[0-9a-f]{6}$/)?.[1];
    return pid === undefined ? null : Number(pid);
  }

  /** Name of the process that holds a singleton stage's lease. */
  async leaseHolder(stage: string): Promise<string | null> {
    const pid = await this.leaseHolderPid(stage);
    for (const [name, p] of this.procs) if (p.child.pid === pid && !p.child.exit) return name;
    return null;
  }
}

/** Ports this test process handed out: never twice. */
const handedOut = new Set<number>();

/**
 * A port nothing listens on, picked below the kernel's ephemeral range — where the bind-to-0
 * ports of other processes (and other test files' freePort()) land — so races are rare.
 */
async function doorPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/**
 * Whether process `pid` holds the listening socket of `port` (Linux /proc); undefined where
 * that cannot be told.
 */
export async function listensOn(pid: number, port: number): Promise<boolean | undefined> {
  try {
    const inodes = new Set<string>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      const text = await readFile(table, 'utf8').catch(() => '');
      for (const line of text.split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        const local = cols[1]?.split(':').at(-1);
        if (local && Number.parseInt(local, 16) === port && cols[3] === '0A' && cols[9]) inodes.add(cols[9]);
      }
    }
    for (const fd of await readdir(`/proc/${pid}/fd`)) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode && inodes.has(inode)) return true;
    }
    return false;
  } catch {
    return undefined;
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
