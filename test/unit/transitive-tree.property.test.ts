/**
 * The sparse per-member state of the incremental transitive trees: after every event each tree
 * equals the plain BFS of DESIGN §3, and holds state for exactly the nodes it reaches (nodes
 * that leave give their slot back, nodes that come back get one again).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TopologyEvent } from '../../stages/topology/events.ts';
import { applyEvent } from '../../stages/transitive/domain/graph-change.ts';
import { edgeOf, GraphStore, TOPIC } from '../../stages/transitive/domain/graph-store.ts';
import { emptyDelta, TransitiveTree } from '../../stages/transitive/domain/transitive-tree.ts';
import { NaiveTopology, type PlainNode } from '../reference/naive-canonical.ts';
import { idPool, topologyEvent } from '../support/topology-arbitraries.ts';

function events(spaces: string[], topics: string[], max: number): fc.Arbitrary<TopologyEvent[]> {
  const mix = { created: 2, explicit: 6, subtopic: 3, extendedPerRevoked: 2 } as const;
  return fc.array(topologyEvent(spaces, topics, mix), { minLength: 1, maxLength: max, size: 'max' });
}

function plain(tree: TransitiveTree, graph: GraphStore, v = tree.source): PlainNode {
  const label = tree.labelOf(v);
  return {
    space_id: graph.spaces.id(v),
    edge: v === tree.source ? 'root' : edgeOf(label),
    topic_id: label >= TOPIC ? graph.topics.id(label - TOPIC) : null,
    children: tree.childrenOf(v).map((k) => plain(tree, graph, k)),
  };
}

const CASES = [
  { name: '10 spaces, 3 topics', spaces: 10, topics: 3, events: 120, runs: 150 },
  { name: '40 spaces, 6 topics', spaces: 40, topics: 6, events: 300, runs: 30 },
];

describe.each(CASES)('TransitiveTree (sparse state) against the plain BFS, $name', (c) => {
  it('equals the plain BFS after every event and holds state only for what it reaches', () => {
    const spaces = idPool(c.spaces, 0x21, '7e', 89);
    const arb = fc.record({
      sources: fc.uniqueArray(fc.constantFrom(...spaces), { minLength: 1, maxLength: 3 }),
      steps: events(spaces, idPool(c.topics, 0x5b, 'c3', 89), c.events),
    });
    fc.assert(
      fc.property(arb, ({ sources, steps }) => {
        const graph = new GraphStore();
        const naive = new NaiveTopology();
        const trees = sources.flatMap((s) => [
          new TransitiveTree(graph, graph.space(s), false),
          new TransitiveTree(graph, graph.space(s), true),
        ]);
        for (const event of steps) {
          naive.apply(event);
          const change = applyEvent(graph, event);
          if (change === 'noop' || change === 'conflict') continue;
          for (const tree of trees) {
            const pairs = tree.full ? change.full : change.explicit;
            if (pairs.length === 0) continue;
            if (change.insert) tree.insert(pairs, emptyDelta());
            else tree.remove(pairs, emptyDelta());
          }
          for (const tree of trees) {
            const want = naive.transitive(graph.spaces.id(tree.source), tree.full);
            expect(plain(tree, graph)).toEqual(want.tree);
            expect(tree.size).toBe(want.visited.size);
            expect(tree.held).toBe(want.visited.size);
          }
        }
      }),
      { numRuns: c.runs },
    );
  });
});
