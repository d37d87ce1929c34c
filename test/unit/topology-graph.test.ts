import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SpaceType, TopologyEvent } from '../../stages/topology/events.ts';
import { normalizeHex } from '../../stages/topology/ids.ts';
import { type EventMeta, TreeInterner } from '../../stages/topology/tree.ts';
import { TopologyGraph } from '../../stages/transitive/domain/topology-graph.ts';
import { expand, NaiveTopology, type PlainNode } from '../reference/naive-canonical.ts';

const FIXTURES = join(import.meta.dirname, '../../../shared/fixtures/topology');

interface Payload {
  space_id?: string;
  topic_id?: string;
  space_type?: SpaceType;
  source_space_id?: string;
  extension?: {
    kind: 'verified' | 'related' | 'subtopic';
    target_space_id?: string;
    target_topic_id?: string;
  };
  meta: { block_number: number | string; block_timestamp: number | string; tx_hash: string; cursor: string };
}

interface Fixture {
  name: string;
  roots: string[];
  events: { event_type: TopologyEvent['event_type']; payload: Payload }[];
  expected: Record<
    string,
    { emissions_per_event_mode: number; final: { tree: PlainNode; canonical_space_ids: string[] } }
  >;
}

const hex16 = (raw: string | undefined): string => {
  const id = normalizeHex(String(raw), 16);
  if (id === null) throw new Error(`bad id ${String(raw)}`);
  return id;
};

/** The validate stage's job, done by hand: ids to lowercase hex, u64s to decimal strings. */
function toEvent({ event_type, payload: p }: Fixture['events'][number]): TopologyEvent {
  const meta: EventMeta = {
    block_number: String(p.meta.block_number),
    block_timestamp: String(p.meta.block_timestamp),
    tx_hash: p.meta.tx_hash,
    cursor: p.meta.cursor,
  };
  if (event_type === 'space.created') {
    return {
      event_type,
      space_id: hex16(p.space_id),
      topic_id: hex16(p.topic_id),
      space_type: p.space_type!,
      meta,
    };
  }
  const ext = p.extension!;
  const extension =
    ext.kind === 'subtopic'
      ? { kind: ext.kind, target_topic_id: hex16(ext.target_topic_id) }
      : { kind: ext.kind, target_space_id: hex16(ext.target_space_id) };
  return { event_type, source_space_id: hex16(p.source_space_id), extension, meta };
}

const fixtureFiles = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));

describe('topology fixtures', () => {
  it('finds the fixtures', () => expect(fixtureFiles.length).toBeGreaterThan(0));

  for (const file of fixtureFiles) {
    const fixture = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as Fixture;
    const roots = fixture.roots.map(hex16);

    it(`${fixture.name}: final graphs and per-event emissions`, () => {
      const graph = new TopologyGraph(roots);
      const naive = new NaiveTopology();
      const last = new Map<string, string>();
      const emissions = new Map(roots.map((r) => [r, 0]));
      for (const envelope of fixture.events) {
        const event = toEvent(envelope);
        expect(graph.apply(event).outcome).toBe(naive.apply(event));
        for (const root of roots) {
          const { tree } = graph.canonical(root);
          expect(expand(tree)).toEqual(naive.canonical(root).tree);
          if (last.get(root) !== tree.hash) emissions.set(root, emissions.get(root)! + 1);
          last.set(root, tree.hash);
        }
      }
      for (const root of roots) {
        const expected = fixture.expected[root]!;
        const { tree, canonical_space_ids } = graph.canonical(root);
        expect(expand(tree)).toEqual(expected.final.tree);
        expect(canonical_space_ids).toEqual(expected.final.canonical_space_ids);
        expect(emissions.get(root)).toBe(expected.emissions_per_event_mode);
      }
    });
  }
});

// Edge cases, on readable ids: byte order is the order of the names' hex.
const S = (n: number) => n.toString(16).padStart(2, '0').repeat(16);
const T = (n: number) => `f${n.toString(16)}`.padStart(32, '0');
const meta: EventMeta = { block_number: '1', block_timestamp: '1', tx_hash: '0x00', cursor: 'c' };
const owner = { kind: 'personal' as const, owner: '00'.repeat(32) };
const created = (space: number, topic: number): TopologyEvent => ({
  event_type: 'space.created',
  space_id: S(space),
  topic_id: T(topic),
  space_type: owner,
  meta,
});
const trust = (
  from: number,
  to: number,
  kind: 'verified' | 'related' = 'verified',
  extend = true,
): TopologyEvent => ({
  event_type: extend ? 'space.trust_extended' : 'space.trust_revoked',
  source_space_id: S(from),
  extension: { kind, target_space_id: S(to) },
  meta,
});
const subtopic = (from: number, topic: number, extend = true): TopologyEvent => ({
  event_type: extend ? 'space.trust_extended' : 'space.trust_revoked',
  source_space_id: S(from),
  extension: { kind: 'subtopic', target_topic_id: T(topic) },
  meta,
});

/** Applies events to both implementations; returns the real graph after checking every root. */
function check(roots: number[], events: TopologyEvent[]): TopologyGraph {
  const graph = new TopologyGraph(roots.map(S));
  const naive = new NaiveTopology();
  for (const e of events) {
    expect(graph.apply(e).outcome).toBe(naive.apply(e));
  }
  for (const r of roots.map(S)) {
    const got = graph.canonical(r);
    const want = naive.canonical(r);
    expect(expand(got.tree)).toEqual(want.tree);
    expect(got.canonical_space_ids).toEqual(want.canonical_space_ids);
  }
  return graph;
}

const shape = (node: PlainNode): string =>
  `${node.space_id.slice(0, 2)}${node.edge === 'topic' ? '~' : ''}${node.children.length ? `(${node.children.map(shape).join(' ')})` : ''}`;

describe('TopologyGraph edge cases', () => {
  it('breaks cycles by first discovery', () => {
    const graph = check([1], [trust(1, 2), trust(2, 3), trust(3, 1), trust(3, 2)]);
    expect(shape(expand(graph.canonical(S(1)).tree))).toBe('01(02(03))');
  });

  it('accepts a self edge without effect on any graph', () => {
    const graph = new TopologyGraph([S(1)]);
    graph.apply(trust(1, 2));
    const before = graph.canonical(S(1)).tree;
    const result = graph.apply(trust(1, 1));
    expect(result).toEqual({ outcome: 'applied', rootsToRecompute: [] });
    expect(graph.canonical(S(1)).tree).toBe(before);
    expect(graph.state().edges).toContainEqual([S(1), S(1), 'verified']);
    // 2 announcing the topic it points at: a member is never attached under itself.
    expect(graph.apply(subtopic(2, 2)).rootsToRecompute).toEqual([]);
    expect(graph.apply(created(2, 2)).rootsToRecompute).toEqual([]);
    expect(graph.canonical(S(1)).tree).toBe(before);
  });

  it('prefers verified over related, related over topic for the same target', () => {
    check(
      [1],
      [created(2, 5), trust(1, 3), subtopic(3, 5), trust(3, 2, 'related'), created(4, 5), subtopic(1, 5)],
    );
    check([1], [trust(1, 2, 'related'), trust(1, 2), trust(1, 2, 'verified', false)]);
  });

  it('does not attach a topic member outside C', () => {
    const graph = check([1], [trust(1, 2), created(3, 7), created(2, 6), subtopic(2, 7)]);
    expect(shape(expand(graph.canonical(S(1)).tree))).toBe('01(02)');
    // Once the member is in C it is attached under the topic edge's source.
    graph.apply(trust(1, 3));
    expect(shape(expand(graph.canonical(S(1)).tree))).toBe('01(02(03~) 03)');
  });

  it('drops a canonical node below a dropped non-C child', () => {
    // 3's full tree reaches 5 first through 4 (a topic edge: 4 ∉ C), so 5 is dropped with 4
    // although 5 ∈ C.
    const setup = [created(3, 9), created(4, 8), trust(1, 2), trust(2, 3), trust(1, 5), trust(2, 6)];
    const graph = check([1], [...setup, subtopic(2, 9), subtopic(3, 8), trust(4, 5)]);
    expect(graph.canonical(S(1)).canonical_space_ids).toEqual([S(1), S(2), S(3), S(5), S(6)]);
    expect(shape(expand(graph.canonical(S(1)).tree))).toBe('01(02(03 06 03~) 05)');
  });

  it('shares a subtree that appears many times', () => {
    const events = [created(2, 9), trust(2, 3), trust(3, 4)];
    for (let s = 10; s < 60; s++) events.push(trust(1, s), subtopic(s, 9));
    events.push(trust(1, 2));
    const graph = check([1], events);
    const { tree } = graph.canonical(S(1));
    const attached = tree.children.slice(1).map((c) => c.children.at(-1)!);
    expect(attached).toHaveLength(50);
    expect(new Set(attached).size).toBe(1);
    expect(tree.size).toBe(1 + 3 + 50 * (1 + 3));
  });

  it('reports conflicts and no-ops without touching state', () => {
    const graph = new TopologyGraph([S(1)]);
    expect(graph.apply(created(1, 1)).outcome).toBe('applied');
    expect(graph.apply(created(1, 1))).toEqual({ outcome: 'noop', rootsToRecompute: [] });
    expect(graph.apply(created(1, 2))).toEqual({ outcome: 'conflict', rootsToRecompute: [] });
    expect(graph.apply(trust(1, 2, 'verified', false)).outcome).toBe('noop');
    expect(graph.apply(subtopic(1, 3, false)).outcome).toBe('noop');
    graph.apply(trust(1, 2));
    expect(graph.apply(trust(1, 2)).outcome).toBe('noop');
    expect(graph.state()).toEqual({
      topics: [[S(1), T(1)]],
      edges: [[S(1), S(2), 'verified']],
      topicEdges: [],
    });
  });

  it('lists no root for an event that touches nothing it reaches', () => {
    const graph = new TopologyGraph([S(1), S(2)]);
    graph.apply(trust(1, 3));
    expect(graph.apply(trust(4, 5)).rootsToRecompute).toEqual([]);
    expect(graph.apply(created(5, 1)).rootsToRecompute).toEqual([]);
    expect(graph.apply(trust(3, 6)).rootsToRecompute).toEqual([S(1)]);
    // A shortcut that finds the same nodes through the same parents changes nothing.
    graph.apply(trust(1, 6));
    expect(graph.apply(trust(3, 6)).outcome).toBe('noop');
    expect(graph.apply(trust(3, 6, 'related')).rootsToRecompute).toEqual([]);
  });

  it('keeps a hub with many edges exact (edges past a few are held in a map)', () => {
    const events: TopologyEvent[] = [];
    for (let s = 10; s < 50; s++) events.push(trust(1, s), trust(s, 2, 'related'), trust(s, 3));
    for (let s = 10; s < 50; s += 3) events.push(trust(1, s, 'related'), trust(1, s, 'verified', false));
    for (let s = 10; s < 50; s += 4) events.push(trust(s, 3, 'verified', false), trust(s, 2));
    check([1, 2], events);
  });

  it('handles a root that was never created', () => {
    check([7], [trust(1, 7), subtopic(7, 1), created(1, 1)]);
  });
});

describe('TopologyGraph on deep chains', () => {
  const N = 100_000;
  const chain = (from: number) => ({ from, to: from + 1 });
  const id = (n: number) => n.toString(16).padStart(32, '0');
  const edge = (e: { from: number; to: number }, extend = true): TopologyEvent => ({
    event_type: extend ? 'space.trust_extended' : 'space.trust_revoked',
    source_space_id: id(e.from),
    extension: { kind: 'verified', target_space_id: id(e.to) },
    meta,
  });

  it(`builds, cuts and regrows a ${N}-deep chain without recursion`, () => {
    const graph = new TopologyGraph([id(0)]);
    // Built bottom-up, so the last event reaches the whole chain at once.
    for (let i = N - 1; i >= 0; i--) graph.apply(edge(chain(i)));
    expect(graph.canonical(id(0)).tree.size).toBe(N + 1);
    graph.apply(edge(chain(0), false));
    expect(graph.canonical(id(0)).tree.size).toBe(1);
    graph.apply(edge(chain(0)));
    const { tree, canonical_space_ids } = graph.canonical(id(0));
    expect(tree.size).toBe(N + 1);
    expect(canonical_space_ids).toHaveLength(N + 1);
    const restored = TopologyGraph.fromState([id(0)], graph.state()).canonical(id(0));
    expect(restored.tree.hash).toBe(tree.hash);
  });

  it('attaches a deep member subtree via a topic', () => {
    const n = 20_000;
    const graph = new TopologyGraph([id(0)]);
    for (let i = 0; i < n; i++) graph.apply(edge(chain(i)));
    graph.apply({ event_type: 'space.created', space_id: id(1), topic_id: T(0), space_type: owner, meta });
    graph.apply({
      event_type: 'space.trust_extended',
      source_space_id: id(n),
      extension: { kind: 'subtopic', target_topic_id: T(0) },
      meta,
    });
    const { tree } = graph.canonical(id(0));
    // The chain, plus at its end 1's chain again (2..n filtered to C, all of it).
    expect(tree.size).toBe(n + 1 + n);
  });
});

describe('TreeInterner generations', () => {
  it('forgets nodes untouched for two generations without ever changing a hash', () => {
    const interner = new TreeInterner();
    interner.generationSize = 2;
    const leaf = (n: number) => interner.node(S(n), 'verified', null, []);
    const first = leaf(1);
    expect(leaf(1)).toBe(first);
    const second = leaf(2);
    leaf(3); // a new generation: 1 and 2 are now the previous one
    expect(leaf(2)).toBe(second); // found there, and moved forward
    leaf(4); // a new generation again: 1 is forgotten, 2 is not
    expect(leaf(2)).toBe(second);
    expect(interner.distinct).toBeLessThanOrEqual(4);
    const again = leaf(1);
    expect(again).not.toBe(first);
    expect(again.hash).toBe(first.hash);
    expect(interner.node(S(9), 'root', null, [again]).hash).toBe(
      interner.node(S(9), 'root', null, [first]).hash,
    );
  });
});
