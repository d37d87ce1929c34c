/**
 * Diffs against the real graph domain: for random event sequences, the emissions of each root
 * (every change of its canonical tree) are encoded by serialize's Encoder in mode `both`, then
 * read back as a consumer does: start from the first snapshot, apply every diff to it, and the
 * result must be every later emission (tree, hash, canonical set), including each tree a diff
 * carries. No emission after the first may fall back to a snapshot.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCanonicalGraphUpdated } from '../../stages/serialize/decode.ts';
import {
  DIFF_MESSAGE,
  decodeCanonicalGraphDiff,
  SNAPSHOT_MESSAGE,
} from '../../stages/serialize/diff-codec.ts';
import {
  applyDiff,
  buildTree,
  canonicalSpaceIds,
  DiffMismatchError,
  type DiffState,
  indexGraph,
} from '../../stages/serialize/graph-diff.ts';
import { Encoder } from '../../stages/serialize/index.ts';
import type { TopologyEvent } from '../../stages/topology/events.ts';
import { type GraphWire, toWire, treeHashOf } from '../../stages/topology/graph-wire.ts';
import { fromJsonTree } from '../../stages/topology/tree.ts';
import { TopologyGraph } from '../../stages/transitive/domain/topology-graph.ts';
import { idPool, propertyMeta as meta, topologyEvent } from '../support/topology-arbitraries.ts';

function eventOver(spaces: string[], topics: string[]): fc.Arbitrary<TopologyEvent> {
  return topologyEvent(spaces, topics, { created: 2, explicit: 6, subtopic: 4, extendedPerRevoked: 2 });
}

function scenario(spaces: number, topics: number, maxEvents: number) {
  const ids = idPool(spaces, 0x3d, '3c');
  return fc.record({
    root: fc.constantFrom(...ids),
    every: fc.integer({ min: 1, max: 5 }),
    events: fc.array(eventOver(ids, idPool(topics, 0xa1, 'a5')), {
      minLength: 1,
      maxLength: maxEvents,
      size: 'max',
    }),
  });
}

/** The emissions of one root: its canonical graph each time the tree changed. */
function emissions(root: string, events: TopologyEvent[]): GraphWire[] {
  const graph = new TopologyGraph([root]);
  const out: GraphWire[] = [];
  let last = '';
  const emit = () => {
    const c = graph.canonical(root);
    if (c.graph.hash === last) return;
    last = c.graph.hash;
    out.push(toWire({ root_id: root, tree: c.graph, canonical_space_ids: c.canonical_space_ids, meta }));
  };
  emit();
  for (const event of events) {
    graph.apply(event);
    emit();
  }
  return out;
}

/** A consumer's state from a decoded snapshot. */
function stateOfSnapshot(bytes: Uint8Array): DiffState {
  const view = decodeCanonicalGraphUpdated(bytes);
  const tree = fromJsonTree(view.tree);
  return indexGraph(
    toWire({ root_id: view.root_id, tree, canonical_space_ids: view.canonical_space_ids, meta }),
  );
}

const CASES = [
  { name: '8 spaces, 3 topics', arb: scenario(8, 3, 80), runs: 300 },
  { name: '30 spaces, 10 topics', arb: scenario(30, 10, 250), runs: 40 },
];

describe.each(CASES)('diffs of the real graph domain, $name', ({ arb, runs }) => {
  it('applied to the first snapshot, yield every later emission', () => {
    fc.assert(
      fc.property(arb, ({ root, every, events }) => {
        const refused: string[] = [];
        const encoder = new Encoder(
          { ATLAS_EMIT_MODE: 'both', ATLAS_SNAPSHOT_EVERY_DIFFS: every },
          (_r, err) => refused.push(err.message),
        );
        const graphs = emissions(root, events);
        let state: DiffState | undefined;
        for (const [i, graph] of graphs.entries()) {
          const seq = BigInt(i + 1);
          const { message, value } = encoder.encode(graph, seq);
          expect(message).toBe(i === 0 ? SNAPSHOT_MESSAGE : DIFF_MESSAGE);
          if (message === SNAPSHOT_MESSAGE) {
            state = stateOfSnapshot(value);
          } else {
            const diff = decodeCanonicalGraphDiff(value);
            expect(diff.sequenceNumber).toBe(seq);
            expect(diff.baseSequenceNumber).toBe(seq - 1n);
            state = applyDiff(state!, diff.diff);
            expect(buildTree(state).hash).toBe(diff.treeHash);
            expect(diff.snapshot !== null).toBe(seq % BigInt(every) === 0n);
            if (diff.snapshot) expect(indexGraph(toWire(withTree(diff.snapshot)))).toEqual(state);
          }
          // Distances included: a consumer's state is exactly the description of the emission.
          expect(state).toEqual(indexGraph(graph));
          expect(buildTree(state).hash).toBe(treeHashOf(graph));
          expect(canonicalSpaceIds(state)).toEqual(graph.canonical_space_ids);
        }
        expect(refused).toEqual([]);
      }),
      { numRuns: runs },
    );
  });
});

describe('diffs of replicas that see emissions late, twice or not at all', () => {
  it('are each right for their base: the emit order (first output per sequence number) rebuilds every emission', () => {
    fc.assert(
      fc.property(
        scenario(14, 3, 120),
        fc.array(fc.nat(), { maxLength: 400 }),
        fc.integer({ min: 1, max: 3 }),
        ({ root, events }, picks, replicas) => {
          const graphs = emissions(root, events);
          // Each replica reads a shuffled stream with repeats (re-reads of pending entries).
          const encoders = Array.from(
            { length: replicas },
            () => new Encoder({ ATLAS_EMIT_MODE: 'diff', ATLAS_SNAPSHOT_EVERY_DIFFS: 1 }),
          );
          const order = [...graphs.keys(), ...picks.map((p) => p % graphs.length)];
          for (let i = order.length - 1; i > 0; i--) {
            const j = (picks[i % Math.max(1, picks.length)] ?? i) % (i + 1);
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          const first = new Map<number, Uint8Array>();
          const names = new Map<number, string>();
          for (const [k, at] of order.entries()) {
            const { message, value } = encoders[k % replicas]!.encode(graphs[at]!, BigInt(at + 1));
            if (!first.has(at)) {
              first.set(at, value);
              names.set(at, message);
            }
          }
          let state: DiffState | undefined;
          for (const [at, graph] of graphs.entries()) {
            const value = first.get(at)!;
            if (names.get(at) === SNAPSHOT_MESSAGE) state = stateOfSnapshot(value);
            else state = applyDiff(state!, decodeCanonicalGraphDiff(value).diff);
            expect(buildTree(state).hash).toBe(treeHashOf(graph));
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

function withTree(view: ReturnType<typeof decodeCanonicalGraphUpdated>) {
  return {
    root_id: view.root_id,
    tree: fromJsonTree(view.tree),
    canonical_space_ids: view.canonical_space_ids,
    meta,
  };
}

describe('a diff applied where it does not belong', () => {
  it('is refused whole, the state unchanged', () => {
    const root = idPool(4, 1, '11');
    const graphs = emissions(root[0]!, [
      {
        event_type: 'space.trust_extended',
        source_space_id: root[0]!,
        extension: { kind: 'verified', target_space_id: root[1]! },
        meta,
      },
      {
        event_type: 'space.trust_extended',
        source_space_id: root[1]!,
        extension: { kind: 'verified', target_space_id: root[2]! },
        meta,
      },
    ]);
    const encoder = new Encoder({ ATLAS_EMIT_MODE: 'diff', ATLAS_SNAPSHOT_EVERY_DIFFS: 100 });
    const first = stateOfSnapshot(encoder.encode(graphs[0]!, 1n).value);
    const second = decodeCanonicalGraphDiff(encoder.encode(graphs[1]!, 2n).value);
    const third = decodeCanonicalGraphDiff(encoder.encode(graphs[2]!, 3n).value);
    const before = structuredClone(first);
    // Diff 3 needs the node diff 2 adds.
    expect(() => applyDiff(first, third.diff)).toThrow(DiffMismatchError);
    expect(first).toEqual(before);
    expect(buildTree(applyDiff(applyDiff(first, second.diff), third.diff)).hash).toBe(treeHashOf(graphs[2]!));
  });

  it('is never written against a base the encoder did not see: a snapshot instead', () => {
    const root = idPool(3, 1, '11');
    const graphs = emissions(root[0]!, [
      {
        event_type: 'space.trust_extended',
        source_space_id: root[0]!,
        extension: { kind: 'verified', target_space_id: root[1]! },
        meta,
      },
      {
        event_type: 'space.trust_extended',
        source_space_id: root[1]!,
        extension: { kind: 'verified', target_space_id: root[2]! },
        meta,
      },
    ]);
    // A restarted instance (or a replica that did not see emission 2) gets emission 3.
    const encoder = new Encoder({ ATLAS_EMIT_MODE: 'diff', ATLAS_SNAPSHOT_EVERY_DIFFS: 100 });
    expect(encoder.encode(graphs[0]!, 1n).message).toBe(SNAPSHOT_MESSAGE);
    expect(encoder.encode(graphs[2]!, 3n).message).toBe(SNAPSHOT_MESSAGE);
    // Emission 2 read late: older than the base kept, so a snapshot, and the base stays at 3.
    expect(encoder.encode(graphs[1]!, 2n).message).toBe(SNAPSHOT_MESSAGE);
    expect(encoder.encode(graphs[2]!, 4n).message).toBe(DIFF_MESSAGE);
  });
});
