/**
 * CanonicalGraphUpdated encoding: our distinct-subtree encoder against protobufjs's generated
 * encoder on the expanded tree, in the same run. Plan targets for 100 / 1K / 10K nodes:
 * < 100 µs / < 1 ms / < 10 ms and < 10 KB / < 100 KB / < 1 MB.
 *
 *   node load/bench-serialize.ts
 */

import { loadavg } from 'node:os';
import { topology } from '../proto/gen/atlas.js';
import { encodeCanonicalGraphUpdated } from '../stages/serialize/encode.ts';
import { type GraphWire, toWire } from '../stages/topology/graph-wire.ts';
import { type EdgeKind, type EventMeta, TreeInterner, type TreeNode } from '../stages/topology/tree.ts';
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

console.log(`node ${process.version}, ${new Date().toISOString()}, load average ${loadavg()[0]?.toFixed(1)}`);
console.log('Per encoder: median / p99 wall time per call. Speed-up: generated median / ours.');
console.log(
  '| tree | expanded nodes | distinct nodes | size | ours | generated | generated from wire | speed-up (encode / from wire) |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const c of cases) console.log(bench(c));
