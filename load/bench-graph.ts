/**
 * Benchmark of the transitive stage's domain: per-event update latency of the incremental
 * canonical graph (apply + canonical() of the roots it lists) against a full recompute
 * (fromState + canonical()) on the same states, memory (heap after the build, and the peak
 * resident set of the whole incremental run: each scenario runs in its own process, so the
 * peak is that size's alone), the bytes one emission puts on the wire between stages when one
 * edge changes, and the canonical tree's expanded vs distinct size.
 *
 * Graphs are random digraphs (out-degree 3) whose root reaches almost all of them. The
 * topic-heavy variant adds a few shared topics, each announced by a couple of spaces, and
 * topic edges to them from 10% of the spaces, so phase 2 attaches large subtrees many times.
 *
 *   node --expose-gc load/bench-graph.ts [sizes...] [plain|topic-heavy] [--json]   e.g. 1000 10000 plain
 */

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import type { TopologyEvent } from '../stages/topology/events.ts';
import { DeltaSender } from '../stages/topology/graph-delta.ts';
import { toWire } from '../stages/topology/graph-wire.ts';
import type { EventMeta, GraphTrees } from '../stages/topology/tree.ts';
import { distinctPostorder } from '../stages/topology/tree.ts';
import { type GraphState, TopologyGraph } from '../stages/transitive/domain/topology-graph.ts';
import { prng } from '../test/support/prng.ts';

const OUT_DEGREE = 3;
const ROOT_DEGREE = 8;
const SHARED_TOPICS = 8;
const MEMBERS_PER_SHARED_TOPIC = 2;
const TOPIC_SOURCE_SHARE = 0.1;
/** Share of new spaces that announce a shared topic (each becomes one more attached member). */
const SHARED_TOPIC_CREATIONS = 0.05;
/** Unmeasured events first, so the JIT has settled. */
const WARM_UP_EVENTS = 1000;
const meta: EventMeta = { block_number: '1', block_timestamp: '1', tx_hash: '0x00', cursor: 'bench' };

interface Scenario {
  spaces: number;
  topicHeavy: boolean;
  events: number;
  fullSamples: number;
}

class World {
  readonly rand: () => number;
  readonly spaces: string[] = [];
  readonly shared: string[] = [];
  readonly state: GraphState = { topics: [], edges: [], topicEdges: [] };
  private readonly edgeKeys = new Set<string>();
  private readonly topicEdgeKeys = new Set<string>();

  constructor(size: number, topicHeavy: boolean, seed: number) {
    this.rand = prng(seed);
    for (let i = 0; i < size; i++) this.spaces.push(this.id());
    if (topicHeavy) for (let i = 0; i < SHARED_TOPICS; i++) this.shared.push(this.id());
    const members = new Map<string, string>();
    for (const topic of this.shared) {
      for (let i = 0; i < MEMBERS_PER_SHARED_TOPIC; i++) members.set(this.pick(this.spaces), topic);
    }
    for (const s of this.spaces) this.state.topics.push([s, members.get(s) ?? this.id()]);
    for (const [i, s] of this.spaces.entries()) {
      for (let k = 0; k < (i === 0 ? ROOT_DEGREE : OUT_DEGREE); k++) this.addEdge(s, this.pick(this.spaces));
      if (topicHeavy && this.rand() < TOPIC_SOURCE_SHARE) this.addTopicEdge(s, this.pick(this.shared));
    }
  }

  get root(): string {
    return this.spaces[0]!;
  }

  /** A random event, applied to this world's own copy of the state. */
  nextEvent(): TopologyEvent {
    const r = this.rand();
    if (r < 0.1) return this.created();
    if (this.shared.length > 0 && r < 0.25) return this.topicEdge();
    if (r < 0.6 || this.state.edges.length === 0) {
      const [s, t] = [this.pick(this.spaces), this.pick(this.spaces)];
      const kind = this.rand() < 0.7 ? 'verified' : 'related';
      if (s === t || !this.addEdge(s, t, kind)) return this.nextEvent();
      return trust('space.trust_extended', s, { kind, target_space_id: t });
    }
    const at = Math.floor(this.rand() * this.state.edges.length);
    const [s, t, kind] = this.state.edges[at]!;
    this.state.edges[at] = this.state.edges[this.state.edges.length - 1]!;
    this.state.edges.pop();
    this.edgeKeys.delete(`${s}|${t}|${kind}`);
    return trust('space.trust_revoked', s, { kind, target_space_id: t });
  }

  private created(): TopologyEvent {
    const space = this.id();
    const topic =
      this.shared.length > 0 && this.rand() < SHARED_TOPIC_CREATIONS ? this.pick(this.shared) : this.id();
    this.spaces.push(space);
    this.state.topics.push([space, topic]);
    const space_type = { kind: 'personal' as const, owner: '00'.repeat(32) };
    return { event_type: 'space.created', space_id: space, topic_id: topic, space_type, meta };
  }

  private topicEdge(): TopologyEvent {
    const [s, topic] = [this.pick(this.spaces), this.pick(this.shared)];
    const key = `${s}|${topic}`;
    const extend = !this.topicEdgeKeys.has(key);
    if (extend) this.addTopicEdge(s, topic);
    else {
      this.topicEdgeKeys.delete(key);
      this.state.topicEdges = this.state.topicEdges.filter(([a, b]) => a !== s || b !== topic);
    }
    const type = extend ? 'space.trust_extended' : 'space.trust_revoked';
    return trust(type, s, { kind: 'subtopic', target_topic_id: topic });
  }

  private addEdge(s: string, t: string, kind: 'verified' | 'related' = 'verified'): boolean {
    const key = `${s}|${t}|${kind}`;
    if (s === t || this.edgeKeys.has(key)) return false;
    this.edgeKeys.add(key);
    this.state.edges.push([s, t, kind]);
    return true;
  }

  private addTopicEdge(s: string, topic: string): void {
    const key = `${s}|${topic}`;
    if (this.topicEdgeKeys.has(key)) return;
    this.topicEdgeKeys.add(key);
    this.state.topicEdges.push([s, topic]);
  }

  private pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.rand() * list.length)]!;
  }

  private id(): string {
    let hex = '';
    for (let i = 0; i < 4; i++)
      hex += Math.floor(this.rand() * 2 ** 32)
        .toString(16)
        .padStart(8, '0');
    return hex;
  }
}

function trust(
  event_type: 'space.trust_extended' | 'space.trust_revoked',
  source_space_id: string,
  extension: Extract<TopologyEvent, { extension: unknown }>['extension'],
): TopologyEvent {
  return { event_type, source_space_id, extension, meta };
}

const gc = (globalThis as { gc?: () => void }).gc;

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

/** Distinct nodes of the own tree and the attached subtrees (each counted once). */
function distinctNodes(graph: GraphTrees): number {
  const seen = new Set(distinctPostorder(graph.own));
  for (const subtree of graph.attached.values()) for (const n of distinctPostorder(subtree)) seen.add(n);
  return seen.size;
}

/** Full recompute of a state, as a restarted stage would do it. */
function fullRecompute(root: string, state: GraphState): { ms: number; hash: string } {
  const start = performance.now();
  const hash = TopologyGraph.fromState([root], state).canonical(root).graph.hash;
  return { ms: performance.now() - start, hash };
}

/** Events between two samples of the live heap (each a full GC, outside the timed part). */
const LIVE_SAMPLE_EVERY = 100;

/** Explicit edges changed, one per event, whose emission's wire bytes are measured. */
const WIRE_SAMPLES = 5;

/**
 * Bytes of the inter-stage `graph` field for emissions after one explicit edge changed, as the
 * whole distinct-subtree table and as a delta (subtrees new since the root's last emission):
 * medians over a few such events. Every emission of the root goes through the delta sender, so
 * each delta is against the one before, as between the stages.
 */
function wireBytes(graph: TopologyGraph, world: World): { full: number; delta: number } {
  const sender = new DeltaSender();
  const send = () => {
    const c = graph.canonical(world.root);
    return sender.delta(world.root, c.graph, c.canonical_space_ids, meta);
  };
  send();
  const full: number[] = [];
  const delta: number[] = [];
  for (let tries = 0; full.length < WIRE_SAMPLES && tries < 100 * WIRE_SAMPLES; tries++) {
    const event = world.nextEvent();
    const explicit = event.event_type !== 'space.created' && event.extension.kind !== 'subtopic';
    if (!graph.apply(event).rootsToRecompute.includes(world.root)) continue;
    const bytes = JSON.stringify(send()).length;
    if (!explicit) continue;
    delta.push(bytes);
    const c = graph.canonical(world.root);
    const wire = toWire({
      root_id: world.root,
      tree: c.graph,
      canonical_space_ids: c.canonical_space_ids,
      meta,
    });
    full.push(JSON.stringify(wire).length);
  }
  full.sort((a, b) => a - b);
  delta.sort((a, b) => a - b);
  return { full: percentile(full, 0.5), delta: percentile(delta, 0.5) };
}

function run(scenario: Scenario) {
  const world = new World(
    scenario.spaces,
    scenario.topicHeavy,
    scenario.spaces + (scenario.topicHeavy ? 1 : 0),
  );
  const initial = structuredClone(world.state);
  const before = heapUsed();
  const buildStart = performance.now();
  const graph = TopologyGraph.fromState([world.root], initial);
  const first = graph.canonical(world.root);
  const buildMs = performance.now() - buildStart;
  const builtHeap = heapUsed() - before;
  const bytesPerSpace = builtHeap / scenario.spaces;
  let peakLive = builtHeap;
  const distinct = distinctNodes(first.graph);
  for (let i = 0; i < WARM_UP_EVENTS; i++) {
    for (const root of graph.apply(world.nextEvent()).rootsToRecompute) graph.canonical(root).graph.hash;
  }

  // Snapshots for the full recomputes, run afterwards: their garbage would otherwise be
  // collected during (and charged to) the incremental events.
  const snapshotEvery = Math.max(1, Math.floor(scenario.events / scenario.fullSamples));
  const snapshots: { state: GraphState; hash: string }[] = [];
  const incremental: number[] = [];
  const built: number[] = [];
  let listed = 0;
  heapUsed();
  for (let i = 0; i < scenario.events; i++) {
    const event = world.nextEvent();
    const builtBefore = graph.nodesBuilt;
    const start = performance.now();
    const result = graph.apply(event);
    for (const root of result.rootsToRecompute) graph.canonical(root).graph.hash;
    incremental.push(performance.now() - start);
    built.push(graph.nodesBuilt - builtBefore);
    listed += result.rootsToRecompute.length;
    if (i % snapshotEvery === snapshotEvery - 1) {
      snapshots.push({ state: structuredClone(world.state), hash: graph.canonical(world.root).graph.hash });
    }
    // Outside the timed part: the domain's live heap (snapshots kept for later count too, a little).
    if (i % LIVE_SAMPLE_EVERY === LIVE_SAMPLE_EVERY - 1) peakLive = Math.max(peakLive, heapUsed() - before);
  }
  // Peak of the build and the incremental run, before the full recomputes add their own.
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const wire = wireBytes(graph, world);
  const last = graph.canonical(world.root);
  const full: number[] = [];
  for (const snapshot of snapshots) {
    heapUsed();
    const recomputed = fullRecompute(world.root, snapshot.state);
    if (recomputed.hash !== snapshot.hash) throw new Error('incremental and full recompute disagree');
    full.push(recomputed.ms);
  }
  incremental.sort((a, b) => a - b);
  full.sort((a, b) => a - b);
  built.sort((a, b) => a - b);
  return {
    variant: scenario.topicHeavy ? 'topic-heavy' : 'plain',
    spaces: scenario.spaces,
    canonical: last.canonical_space_ids.length,
    expanded: last.graph.size,
    distinct,
    buildMs,
    bytesPerSpace,
    peakRss,
    peakLive,
    wireFull: wire.full,
    wireDelta: wire.delta,
    events: scenario.events,
    listed: listed / scenario.events,
    builtMean: built.reduce((a, b) => a + b, 0) / built.length,
    builtP99: percentile(built, 0.99),
    p50: percentile(incremental, 0.5),
    p99: percentile(incremental, 0.99),
    max: incremental.at(-1)!,
    fullP50: percentile(full, 0.5),
    fullP99: percentile(full, 0.99),
  };
}

const ms = (v: number) => (v < 1 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : v.toFixed(0));
const bytes = (v: number) =>
  v >= 1e6 ? `${(v / 1e6).toFixed(1)} MB` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} KB` : `${v} B`;
const count = (v: number) =>
  v >= 1e6 ? `${(v / 1e6).toFixed(1)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(0)}K` : String(v);

function table(rows: Row[]): string {
  const head = [
    'variant',
    'spaces',
    '|C|',
    'expanded',
    'distinct',
    'build ms',
    'B/space',
    'live MB',
    'peak MB',
    'wire full',
    'wire delta',
    'events',
    'roots/ev',
    'built/ev',
    'built p99',
    'incr p50',
    'incr p99',
    'incr max',
    'full p50',
    'full p99',
    'p99 speed-up',
  ];
  const body = rows.map((r) => [
    r.variant,
    count(r.spaces),
    count(r.canonical),
    count(r.expanded),
    count(r.distinct),
    ms(r.buildMs),
    count(Math.round(r.bytesPerSpace)),
    (r.peakLive / 1e6).toFixed(0),
    (r.peakRss / 1e6).toFixed(0),
    bytes(r.wireFull),
    bytes(r.wireDelta),
    String(r.events),
    r.listed.toFixed(2),
    r.builtMean.toFixed(0),
    String(r.builtP99),
    ms(r.p50),
    ms(r.p99),
    ms(r.max),
    ms(r.fullP50),
    ms(r.fullP99),
    `${(r.fullP50 / r.p99).toFixed(0)}x`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padStart(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

/** Events and full-recompute samples per size, plain / topic-heavy: about 3 minutes in all. */
const PLAN: Record<number, [Plan, Plan]> = {
  1000: [
    { events: 5000, fullSamples: 50 },
    { events: 3000, fullSamples: 30 },
  ],
  5000: [
    { events: 5000, fullSamples: 20 },
    { events: 2000, fullSamples: 10 },
  ],
  10000: [
    { events: 5000, fullSamples: 10 },
    { events: 1500, fullSamples: 5 },
  ],
  100000: [
    { events: 2000, fullSamples: 3 },
    { events: 300, fullSamples: 2 },
  ],
};

interface Plan {
  events: number;
  fullSamples: number;
}

type Row = ReturnType<typeof run>;

/** Runs one scenario in a child process, so its peak resident set is its own. */
function runIsolated(spaces: number, topicHeavy: boolean): Row {
  const variant = topicHeavy ? 'topic-heavy' : 'plain';
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--one', String(spaces), variant],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 },
  );
  if (child.status !== 0) throw new Error(`${variant} ${spaces}: exit ${child.status ?? child.signal}`);
  return JSON.parse(child.stdout) as Row;
}

function scenario(spaces: number, topicHeavy: boolean): Scenario {
  const plan = PLAN[spaces]?.[topicHeavy ? 1 : 0] ?? { events: 1000, fullSamples: 3 };
  return { spaces, topicHeavy, ...plan };
}

const args = process.argv.slice(2);
const sizes = args.filter((a) => /^\d+$/.test(a)).map(Number);
const variants = args.includes('plain') ? [false] : args.includes('topic-heavy') ? [true] : [false, true];
if (!gc) console.warn('run with --expose-gc for meaningful memory numbers');
if (args[0] === '--one') {
  console.log(JSON.stringify(run(scenario(sizes[0]!, args[2] === 'topic-heavy'))));
} else {
  const rows: Row[] = [];
  for (const spaces of sizes.length > 0 ? sizes : Object.keys(PLAN).map(Number)) {
    for (const topicHeavy of variants) {
      const row = runIsolated(spaces, topicHeavy);
      rows.push(row);
      // Each row as it comes, so a long run stopped halfway still leaves what it measured.
      console.error(`done: ${row.variant} ${spaces} ${JSON.stringify(row)}`);
    }
  }
  if (args.includes('--json')) console.log(JSON.stringify(rows));
  else {
    console.log(
      [
        'incr = per-event latency: apply() + canonical() of every root it lists (+ its graph hash), ms.',
        'full = TopologyGraph.fromState + canonical() on the same states (a from-scratch recompute), ms.',
        'built = tree nodes interned per event (work follows the changed distinct subtrees).',
        'B/space = heap of the built TopologyGraph / spaces; expanded = canonical tree nodes, distinct =',
        'nodes of the own tree and attached subtrees (references included).',
        'live MB = largest live heap of the graph (after a full GC: after the build and every 100 events).',
        'peak MB = peak resident set of the scenario (own process, harness included) through build and events.',
        'wire full = bytes of the whole distinct-subtree table (JSON) for an emission after one edge changed;',
        'wire delta = bytes of the same emission as a delta (subtrees new since the last one, JSON).',
        '',
      ].join('\n'),
    );
    console.log(table(rows));
  }
}
