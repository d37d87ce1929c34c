import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TopologyEvent } from '../../stages/topology/events.ts';
import { TopologyGraph } from '../../stages/transitive/domain/topology-graph.ts';
import { expand, NaiveTopology } from '../reference/naive-canonical.ts';
import { idPool, topologyEvent } from '../support/topology-arbitraries.ts';

function eventOver(spaces: string[], topics: string[]): fc.Arbitrary<TopologyEvent> {
  // Extensions twice as likely as revocations, so graphs grow dense enough for ties and cycles.
  return topologyEvent(spaces, topics, { created: 2, explicit: 6, subtopic: 3, extendedPerRevoked: 2 });
}

/** Roots (some never created), and steps: an event, and whether to read the graphs after it. */
function scenario(spaces: number, topics: number, maxEvents: number) {
  const ids = idPool(spaces, 0x3d, '3c');
  return fc.record({
    roots: fc.uniqueArray(fc.constantFrom(...ids), { minLength: 1, maxLength: 3 }),
    steps: fc.array(fc.tuple(eventOver(ids, idPool(topics, 0xa1, 'a5')), fc.boolean()), {
      minLength: 1,
      maxLength: maxEvents,
      size: 'max',
    }),
  });
}

/** Small pools: dense graphs, many cycles and ties. Bigger pools: deeper trees, bigger cuts. */
const CASES = [
  { name: '8 spaces, 3 topics', arb: scenario(8, 3, 80), runs: 600 },
  { name: '14 spaces, 3 topics', arb: scenario(14, 3, 160), runs: 120 },
  { name: '30 spaces, 10 topics', arb: scenario(30, 10, 250), runs: 40 },
];

describe.each(CASES)('TopologyGraph against the naive reference, $name', ({ arb, runs }) => {
  it('gives the naive canonical graph of every root after every event, and lists every changed root', () => {
    fc.assert(
      fc.property(arb, ({ roots, steps }) => {
        const graph = new TopologyGraph(roots);
        const naive = new NaiveTopology();
        const seen = new Map(roots.map((r) => [r, graph.canonical(r).tree.hash]));
        const listed = new Set<string>();
        for (const [i, [event, read]] of steps.entries()) {
          const result = graph.apply(event);
          expect(result.outcome).toBe(naive.apply(event));
          for (const r of result.rootsToRecompute) listed.add(r);
          if (!read && i < steps.length - 1) continue;
          for (const root of roots) {
            const got = graph.canonical(root);
            const want = naive.canonical(root);
            expect(expand(got.tree)).toEqual(want.tree);
            expect(got.canonical_space_ids).toEqual(want.canonical_space_ids);
            // Changed since it was last read: some event in between must have listed it.
            if (got.tree.hash !== seen.get(root)) expect(listed).toContain(root);
            seen.set(root, got.tree.hash);
          }
          listed.clear();
        }
      }),
      { numRuns: runs },
    );
  });

  it('restores equal graphs from its state', () => {
    fc.assert(
      fc.property(arb, ({ roots, steps }) => {
        const graph = new TopologyGraph(roots);
        for (const [event] of steps) graph.apply(event);
        const restored = TopologyGraph.fromState(roots, graph.state());
        expect(restored.state()).toEqual(graph.state());
        for (const root of roots) {
          const a = graph.canonical(root);
          const b = restored.canonical(root);
          expect(b.tree.hash).toBe(a.tree.hash);
          expect(b.canonical_space_ids).toEqual(a.canonical_space_ids);
        }
      }),
      { numRuns: runs / 2 },
    );
  });
});

describe('TopologyGraph against a full recompute, larger graphs', () => {
  it('equals fromState(state()) after every batch of events, listing every changed root', () => {
    fc.assert(
      fc.property(scenario(120, 6, 600), ({ roots, steps }) => {
        const graph = new TopologyGraph(roots);
        const seen = new Map(roots.map((r) => [r, graph.canonical(r).tree.hash]));
        const listed = new Set<string>();
        for (const [i, [event]] of steps.entries()) {
          for (const r of graph.apply(event).rootsToRecompute) listed.add(r);
          if (i % 25 !== 24 && i < steps.length - 1) continue;
          const fresh = TopologyGraph.fromState(roots, graph.state());
          for (const root of roots) {
            const got = graph.canonical(root);
            const want = fresh.canonical(root);
            expect(got.tree.hash).toBe(want.tree.hash);
            expect(got.canonical_space_ids).toEqual(want.canonical_space_ids);
            if (got.tree.hash !== seen.get(root)) expect(listed).toContain(root);
            seen.set(root, got.tree.hash);
          }
          listed.clear();
        }
      }),
      { numRuns: 40 },
    );
  });
});
