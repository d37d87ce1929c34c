/**
 * The delta wire between stages: a receiver fed the deltas of every emission holds exactly the
 * graph a whole table would have carried (and what it encodes is byte for byte the expanded
 * tree's snapshot); one that lacks what a delta builds on refuses it with a typed error,
 * unchanged, and recovers from the whole table the sender then sends.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeCanonicalGraphUpdated } from '../../stages/serialize/encode.ts';
import type { TopologyEvent } from '../../stages/topology/events.ts';
import {
  DeltaReceiver,
  DeltaSender,
  type GraphDelta,
  MissingSubtreeError,
} from '../../stages/topology/graph-delta.ts';
import { fromWire, toWire } from '../../stages/topology/graph-wire.ts';
import { TopologyGraph } from '../../stages/transitive/domain/topology-graph.ts';
import { idPool, propertyMeta as meta, topologyEvent } from '../support/topology-arbitraries.ts';

const spaces = idPool(24, 0x11, '4d', 61);
const topics = idPool(4, 0x90, 'e2', 61);
const event = topologyEvent(spaces, topics, { created: 2, explicit: 6, subtopic: 3 });

const arb = fc.record({
  roots: fc.uniqueArray(fc.constantFrom(...spaces), { minLength: 1, maxLength: 2 }),
  steps: fc.array(event, { minLength: 1, maxLength: 150, size: 'max' }),
  /** After which step a receiver restarts with an empty cache. */
  restartAt: fc.nat(150),
});

/** The receiver's graph against the whole table of the same graph. */
function expectSame(receiver: DeltaReceiver, graph: TopologyGraph, root: string): void {
  const c = graph.canonical(root);
  const held = receiver.wire(root);
  const want = toWire({ root_id: root, tree: c.graph, canonical_space_ids: c.canonical_space_ids, meta });
  expect(held).toEqual(want);
  expect(held.hash).toBe(c.graph.hash);
  const expanded = toWire({ root_id: root, tree: c.tree, canonical_space_ids: c.canonical_space_ids, meta });
  expect(fromWire(held).tree.hash).toBe(c.tree.hash);
  expect(held.expanded_nodes).toBe(expanded.expanded_nodes);
  expect(Buffer.from(encodeCanonicalGraphUpdated(held, 1))).toEqual(
    Buffer.from(encodeCanonicalGraphUpdated(expanded, 1)),
  );
  // What a stage persists and another rebuilds from: the held table as a whole-table delta.
  const copy = new DeltaReceiver();
  copy.apply(receiver.whole(root));
  expect(copy.wire(root)).toEqual(held);
}

describe('graph deltas between stages', () => {
  it('rebuild every emitted graph exactly, and recover after a restart with an empty cache', () => {
    fc.assert(
      fc.property(arb, ({ roots, steps, restartAt }) => {
        const graph = new TopologyGraph(roots);
        const sender = new DeltaSender();
        let receiver = new DeltaReceiver();
        const send = (root: string): GraphDelta => {
          const c = graph.canonical(root);
          return sender.delta(root, c.graph, c.canonical_space_ids, meta);
        };
        for (const root of roots) receiver.apply(send(root));
        for (const [i, e] of steps.entries()) {
          if (i === restartAt) receiver = new DeltaReceiver();
          for (const root of graph.apply(e).rootsToRecompute) {
            const delta = send(root);
            if (delta.base === '' || receiver.hashOf(root) === delta.base) receiver.apply(delta);
            else {
              // Lacks the base: refused, typed, nothing applied; the sender then sends it all.
              expect(() => receiver.apply(delta)).toThrow(MissingSubtreeError);
              expect(receiver.hashOf(root)).toBe('');
              sender.forget(root);
              const whole = send(root);
              expect(whole.base).toBe('');
              receiver.apply(whole);
            }
            expectSame(receiver, graph, root);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it('refuses a delta that references a subtree it does not hold, and stays as it was', () => {
    const roots = [spaces[0]!];
    const graph = new TopologyGraph(roots);
    const sender = new DeltaSender();
    const receiver = new DeltaReceiver();
    const edge = (t: string): TopologyEvent => ({
      event_type: 'space.trust_extended',
      source_space_id: spaces[0]!,
      extension: { kind: 'verified', target_space_id: t },
      meta,
    });
    const next = () => {
      const c = graph.canonical(roots[0]!);
      return sender.delta(roots[0]!, c.graph, c.canonical_space_ids, meta);
    };
    graph.apply(edge(spaces[1]!));
    receiver.apply(next());
    const before = receiver.wire(roots[0]!);
    graph.apply(edge(spaces[2]!));
    const delta = next();
    expect(delta.nodes.length).toBeGreaterThan(0);
    // Drop one new leaf: its parent now references a subtree the receiver never got.
    const broken = { ...delta, nodes: delta.nodes.slice(1) };
    const error = (() => {
      try {
        receiver.apply(broken);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(MissingSubtreeError);
    expect((error as MissingSubtreeError).reason).toBe('subtree');
    expect(receiver.wire(roots[0]!)).toEqual(before);
    receiver.apply(delta);
    expectSame(receiver, graph, roots[0]!);
  });
});
