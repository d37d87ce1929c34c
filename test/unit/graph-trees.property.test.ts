/**
 * The canonical graph as own tree + attached subtrees (references in the own tree) describes
 * exactly the expanded tree of DESIGN §3: on random topic-heavy topologies, after every event,
 * its expansion is the naive reference's tree (hash and structure), its wire encodes to the same
 * snapshot bytes as the expanded tree's, the wire gives the expanded tree's Merkle hash, and
 * graph hashes are equal exactly when expanded trees are.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeCanonicalGraphUpdated } from '../../stages/serialize/encode.ts';
import { toWire, treeHashOf } from '../../stages/topology/graph-wire.ts';
import { type EventMeta, expandGraph, fromJsonTree } from '../../stages/topology/tree.ts';
import { TopologyGraph } from '../../stages/transitive/domain/topology-graph.ts';
import { NaiveTopology, type PlainNode } from '../reference/naive-canonical.ts';
import { idPool, propertyMeta, topologyEvent } from '../support/topology-arbitraries.ts';

const meta: EventMeta = { ...propertyMeta, block_number: '7' };
const spaces = idPool(16, 0x21, '5b', 53);
/** Few topics, each announced by several spaces and pointed at often: attachments everywhere. */
const topics = idPool(3, 0x70, 'c8', 53);
const event = topologyEvent(
  spaces,
  topics,
  { created: 3, explicit: 5, subtopic: 5, extendedPerRevoked: 2 },
  meta,
);

const arb = fc.record({
  roots: fc.uniqueArray(fc.constantFrom(...spaces), { minLength: 1, maxLength: 2 }),
  events: fc.array(event, { minLength: 1, maxLength: 120, size: 'max' }),
});

function asJson(node: PlainNode): Parameters<typeof fromJsonTree>[0] {
  return { ...node, children: node.children.map(asJson) };
}

describe('own tree + attached subtrees, on random topic-heavy topologies', () => {
  it('expand to exactly the expanded tree: hash, structure, snapshot bytes, tree_hash', () => {
    let attachedSeen = 0;
    fc.assert(
      fc.property(arb, ({ roots, events }) => {
        const graph = new TopologyGraph(roots);
        const naive = new NaiveTopology();
        const expandedOf = new Map<string, string>();
        const graphOf = new Map<string, string>();
        for (const e of events) {
          graph.apply(e);
          naive.apply(e);
          for (const root of roots) {
            const c = graph.canonical(root);
            const want = naive.canonical(root);
            const tree = fromJsonTree(asJson(want.tree));
            attachedSeen += c.graph.attached.size;
            expect(expandGraph(c.graph).hash).toBe(tree.hash);
            expect(c.tree.hash).toBe(tree.hash);
            expect(c.graph.size).toBe(tree.size);
            const wire = toWire({
              root_id: root,
              tree: c.graph,
              canonical_space_ids: c.canonical_space_ids,
              meta,
            });
            const plain = toWire({
              root_id: root,
              tree,
              canonical_space_ids: want.canonical_space_ids,
              meta,
            });
            expect(treeHashOf(wire)).toBe(tree.hash);
            expect(wire.expanded_nodes).toBe(plain.expanded_nodes);
            expect(Buffer.from(encodeCanonicalGraphUpdated(wire, 3))).toEqual(
              Buffer.from(encodeCanonicalGraphUpdated(plain, 3)),
            );
            // Equal graph hashes ⇔ equal expanded trees, across every graph seen.
            expect(expandedOf.get(c.graph.hash) ?? tree.hash).toBe(tree.hash);
            expect(graphOf.get(tree.hash) ?? c.graph.hash).toBe(c.graph.hash);
            expandedOf.set(c.graph.hash, tree.hash);
            graphOf.set(tree.hash, c.graph.hash);
          }
        }
      }),
      { numRuns: 150 },
    );
    // The property is about attachments: the topologies must have had plenty.
    expect(attachedSeen).toBeGreaterThan(1000);
  });

  it('give an expanded tree read late the tree of its own graph, not of a newer state', () => {
    fc.assert(
      fc.property(arb, ({ roots, events }) => {
        const graph = new TopologyGraph(roots);
        const naive = new NaiveTopology();
        const root = roots[0]!;
        for (const e of events) {
          const before = graph.canonical(root);
          const want = fromJsonTree(asJson(naive.canonical(root).tree)).hash;
          graph.apply(e);
          naive.apply(e);
          graph.canonical(root).tree;
          expect(before.tree.hash).toBe(want);
        }
      }),
      { numRuns: 60 },
    );
  });
});
