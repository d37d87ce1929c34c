/**
 * CanonicalGraphUpdated encoding: our distinct-subtree encoder against protobufjs's generated
 * encoder on the expanded tree, in the same run. Plan targets for 100 / 1K / 10K nodes:
 * < 100 µs / < 1 ms / < 10 ms and < 10 KB / < 100 KB / < 1 MB.
 *
 * `diff`: Kafka bytes per emission, CanonicalGraphDiff against CanonicalGraphUpdated, on a
 * topic-heavy graph of the real graph domain where each event changes one edge (issue 10's
 * target: a diff < 1 KB), and the time serialize spends per emission on each.
 *
 *   node load/bench-serialize.ts [encode] [diff] [spaces=10000] [events=300]
 */

import { loadavg } from 'node:os';
import { topology } from '../proto/gen/atlas.js';
import { encodeCanonicalGraphUpdated } from '../stages/serialize/encode.ts';
import { Encoder } from '../stages/serialize/index.ts';
import type { TopologyEvent } from '../stages/topology/events.ts';
import { type GraphWire, toWire } from '../stages/topology/graph-wire.ts';
import { type EdgeKind, type EventMeta, TreeInterner, type TreeNode } from '../stages/topology/tree.ts';
import { type GraphState, TopologyGraph } from '../stages/transitive/domain/topology-graph.ts';
import { prng } from '../test/support/prng.ts';
import { expandedMessage } from '../test/support/proto-reference.ts';

interface Case {
  name: string;
  graph: GraphWire;
  repeats: number;
}

const META: EventMeta = {
  block_number: '21000000',
  block_timestamp: '1732300000',
  tx_hash: '',
  cursor: 'bench:1',
  created_by: 'ab'.repeat(32),
};
const SEQUENCE = 123_456n;

const id = (n: number): string => n.toString(16).padStart(32, '0');

/** A random tree of `size` nodes, no sharing (the encoder's worst case): each node hangs under an earlier one. */
function randomTree(size: number, seed: number): GraphWire {
  const next = prng(seed);
  const children: number[][] = Array.from({ length: size }, () => []);
  for (let i = 1; i < size; i++) children[Math.floor(next() * i)]!.push(i);
  const kinds: EdgeKind[] = ['verified', 'related', 'topic'];
  const interner = new TreeInterner();
  const built: TreeNode[] = new Array(size);
  for (let i = size - 1; i >= 0; i--) {
    const edge = i === 0 ? 'root' : kinds[Math.floor(next() * 3)]!;
    const topic = edge === 'topic' ? id(1_000_000 + Math.floor(next() * 50)) : null;
    built[i] = interner.node(
      id(i + 1),
      edge,
      topic,
      children[i]!.map((c) => built[c]!),
    );
  }
  return wire(built[0]!, size);
}

/**
 * Topic-heavy: `spaces` canonical spaces under the root all announce and follow one topic, so
 * each carries the topic subtrees of all the others: ~spaces² expanded, ~2·spaces distinct.
 */
function topicHeavyTree(spaces: number): GraphWire {
  const interner = new TreeInterner();
  const topic = id(999_999);
  const members = Array.from({ length: spaces }, (_, i) => interner.node(id(i + 2), 'topic', topic, []));
  const under = members.map((_, s) =>
    interner.node(
      id(s + 2),
      'verified',
      null,
      members.filter((_, m) => m !== s),
    ),
  );
  return wire(interner.node(id(1), 'root', null, under), spaces + 1);
}

function wire(tree: TreeNode, canonical: number): GraphWire {
  const canonical_space_ids = Array.from({ length: canonical }, (_, i) => id(i + 1));
  return toWire({ root_id: tree.space, tree, canonical_space_ids, meta: META });
}

interface Stats {
  median: number;
  p99: number;
}

/** Calls alternate between the encoders, so load from elsewhere on the machine hits them alike. */
function measure<K extends string>(runs: Record<K, () => unknown>, repeats: number): Record<K, Stats> {
  const names = Object.keys(runs) as K[];
  const samples = names.map((): number[] => []);
  for (let i = -Math.min(20, repeats); i < repeats; i++) {
    names.forEach((name, n) => {
      const start = process.hrtime.bigint();
      runs[name]();
      if (i >= 0) samples[n]!.push(Number(process.hrtime.bigint() - start) / 1e6);
    });
  }
  return Object.fromEntries(names.map((name, n) => [name, percentiles(samples[n]!)])) as Record<K, Stats>;
}

function percentiles(samples: number[]): Stats {
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
  return { median: at(0.5), p99: at(0.99) };
}

const ms = (v: number): string => (v < 1 ? `${(v * 1000).toFixed(1)} µs` : `${v.toFixed(2)} ms`);
const kb = (bytes: number): string =>
  bytes < 1e6 ? `${(bytes / 1000).toFixed(1)} KB` : `${(bytes / 1e6).toFixed(1)} MB`;
const ratio = (base: Stats, ours: Stats): string => `${(base.median / ours.median).toFixed(1)}x`;
const both = ({ median, p99 }: Stats): string => `${ms(median)} / ${ms(p99)}`;

function bench({ name, graph, repeats }: Case): string {
  const message = expandedMessage(graph, SEQUENCE);
  const encoded = encodeCanonicalGraphUpdated(graph, SEQUENCE);
  if (Buffer.compare(Buffer.from(topology.CanonicalGraphUpdated.encode(message).finish()), encoded) !== 0) {
    throw new Error(`${name}: our bytes differ from the generated encoder's`);
  }
  const t = measure(
    {
      ours: () => encodeCanonicalGraphUpdated(graph, SEQUENCE),
      generated: () => topology.CanonicalGraphUpdated.encode(message).finish(),
      // What the stage would run instead: hex ids to bytes, the message object, then encode.
      fromWire: () => topology.CanonicalGraphUpdated.encode(expandedMessage(graph, SEQUENCE)).finish(),
    },
    repeats,
  );
  return `| ${[
    name,
    graph.expanded_nodes,
    graph.nodes.length,
    kb(encoded.length),
    both(t.ours),
    both(t.generated),
    both(t.fromWire),
    `${ratio(t.generated, t.ours)} / ${ratio(t.fromWire, t.ours)}`,
  ].join(' | ')} |`;
}

const cases: Case[] = [
  { name: 'random 100', graph: randomTree(100, 1), repeats: 5000 },
  { name: 'random 1K', graph: randomTree(1000, 2), repeats: 2000 },
  { name: 'random 10K', graph: randomTree(10_000, 3), repeats: 300 },
  { name: 'topic-heavy 1M', graph: topicHeavyTree(1000), repeats: 15 },
];

/**
 * Topic-heavy, as bench-graph builds it: a random digraph (out-degree 3) the root reaches almost
 * whole, 8 shared topics announced by 2 spaces each, topic edges to them from 10% of the spaces.
 */
function topicHeavyWorld(spaces: number, seed: number) {
  const next = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
  const ids = Array.from({ length: spaces }, (_, i) => id(0x10_0000 + i));
  const shared = Array.from({ length: 8 }, (_, i) => id(0x20_0000 + i));
  const state: GraphState = { topics: [], edges: [], topicEdges: [] };
  const members = new Map<string, string>();
  for (const topic of shared) for (let i = 0; i < 2; i++) members.set(pick(ids), topic);
  for (const [i, s] of ids.entries()) state.topics.push([s, members.get(s) ?? id(0x30_0000 + i)]);
  const edges = new Set<string>();
  for (const [i, s] of ids.entries()) {
    for (let k = 0; k < (i === 0 ? 8 : 3); k++) {
      const t = pick(ids);
      if (t !== s && !edges.has(s + t)) {
        edges.add(s + t);
        state.edges.push([s, t, 'verified']);
      }
    }
    if (next() < 0.1) state.topicEdges.push([s, pick(shared)]);
  }
  /** One edge changed: a verified edge added or removed (half each), or a topic edge added. */
  const event = (): TopologyEvent => {
    const r = next();
    if (r < 0.45 && state.edges.length > 0) {
      const [s, t] = state.edges.splice(Math.floor(next() * state.edges.length), 1)[0]!;
      edges.delete(s + t);
      return {
        event_type: 'space.trust_revoked',
        source_space_id: s,
        extension: { kind: 'verified', target_space_id: t },
        meta: META,
      };
    }
    if (r < 0.9) {
      const [s, t] = [pick(ids), pick(ids)];
      if (s === t || edges.has(s + t)) return event();
      edges.add(s + t);
      state.edges.push([s, t, 'verified']);
      return {
        event_type: 'space.trust_extended',
        source_space_id: s,
        extension: { kind: 'verified', target_space_id: t },
        meta: META,
      };
    }
    return {
      event_type: 'space.trust_extended',
      source_space_id: pick(ids),
      extension: { kind: 'subtopic', target_topic_id: pick(shared) },
      meta: META,
    };
  };
  return { root: ids[0]!, state, event };
}

/** Kafka bytes and serialize time per emission: snapshot, diff, and diff carrying the tree. */
function benchDiff(spaces: number, events: number): void {
  const world = topicHeavyWorld(spaces, spaces);
  const graph = TopologyGraph.fromState([world.root], world.state);
  const wireOf = (): GraphWire => {
    const c = graph.canonical(world.root);
    return toWire({
      root_id: world.root,
      tree: c.graph,
      canonical_space_ids: c.canonical_space_ids,
      meta: META,
    });
  };
  const encoder = new Encoder({ ATLAS_EMIT_MODE: 'diff', ATLAS_SNAPSHOT_EVERY_DIFFS: 1 }, (_r, err) => {
    throw err;
  });
  let previous = wireOf();
  let sequence = 1n;
  encoder.encode(previous, sequence);
  const size = { snapshot: [] as number[], diff: [] as number[], changes: [] as number[] };
  const time = { snapshot: [] as number[], diff: [] as number[] };
  for (let i = 0; i < events; i++) {
    graph.apply(world.event());
    const current = wireOf();
    if (current.hash === previous.hash) continue;
    previous = current;
    sequence++;
    let start = performance.now();
    const snapshot = encodeCanonicalGraphUpdated(current, sequence);
    time.snapshot.push(performance.now() - start);
    start = performance.now();
    const diff = encoder.encode(current, sequence);
    time.diff.push(performance.now() - start);
    if (diff.changes === undefined) throw new Error('a snapshot where a diff was expected');
    size.snapshot.push(snapshot.length);
    size.diff.push(diff.value.length);
    size.changes.push(diff.changes);
  }
  const s = (xs: number[]) => percentiles([...xs]);
  const bytes = ({ median, p99 }: Stats) => `${kb(median)} / ${kb(p99)}`;
  const within = size.diff.filter((b) => b < 1000).length;
  console.log(
    `\nTopic-heavy, ${spaces} spaces, ${size.diff.length} emissions of ${events} one-edge events (median / p99):`,
  );
  console.log('| message | Kafka bytes | serialize time |');
  console.log('|---|---|---|');
  console.log(
    `| CanonicalGraphUpdated (snapshot) | ${bytes(s(size.snapshot))} | ${both(s(time.snapshot))} |`,
  );
  console.log(`| CanonicalGraphDiff | ${bytes(s(size.diff))} | ${both(s(time.diff))} |`);
  console.log(
    `diff changes per emission (median / p99 / max): ${s(size.changes).median} / ${s(size.changes).p99} / ${Math.max(...size.changes)}; diffs < 1 KB: ${within} of ${size.diff.length}; largest diff ${kb(Math.max(...size.diff))}`,
  );
}

const args = process.argv.slice(2);
const parts = args.filter((a) => !/^\d+$/.test(a));
const [spaces = 10_000, events = 300] = args.filter((a) => /^\d+$/.test(a)).map(Number);
console.log(`node ${process.version}, ${new Date().toISOString()}, load average ${loadavg()[0]?.toFixed(1)}`);
if (parts.length === 0 || parts.includes('encode')) {
  console.log('Per encoder: median / p99 wall time per call. Speed-up: generated median / ours.');
  console.log(
    '| tree | expanded nodes | distinct nodes | size | ours | generated | generated from wire | speed-up (encode / from wire) |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const c of cases) console.log(bench(c));
}
if (parts.length === 0 || parts.includes('diff')) benchDiff(spaces, events);
