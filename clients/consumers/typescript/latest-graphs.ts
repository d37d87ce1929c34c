/**
 * The latest canonical graph per root, kept from a stream of CanonicalGraphUpdated (snapshot) and
 * CanonicalGraphDiff messages, with the per-root sequence_number contract checked (1, 2, 3…
 * dense): a number at or below the one already held is a repeat (skipped: the graph held is newer
 * or the same), a number past the next one is a gap. A snapshot past a gap is applied (it is the
 * root's full graph, so it supersedes whatever was lost); a diff past a gap has no base
 * (`no_base`): the root waits for the next message carrying a tree. A diff is applied whole, then
 * the result is checked against the diff's tree hash and, when the diff carries the tree, against
 * that tree (`verified`); a result that differs is a `mismatch`, and the carried tree, if any,
 * replaces it.
 */

import type { CanonicalGraphUpdatedView } from '../../../stages/serialize/decode.ts';
import type { CanonicalGraphDiffView } from '../../../stages/serialize/diff-codec.ts';
import {
  applyDiff,
  buildTree,
  canonicalSpaceIds,
  type DiffState,
  indexGraph,
  NotDiffableError,
} from '../../../stages/serialize/graph-diff.ts';
import { type JsonTreeNode, toWire } from '../../../stages/topology/graph-wire.ts';
import { fromJsonTree, type TreeNode as SharedNode } from '../../../stages/topology/tree.ts';

export interface Graph {
  root_id: string;
  sequence_number: number;
  canonical_space_ids: string[];
  tree: TreeNode;
}

/** A tree node as the fixtures give it: hex ids, topic_id null unless the edge is `topic`. */
export interface TreeNode {
  space_id: string;
  edge: string;
  topic_id: string | null;
  children: TreeNode[];
}

export interface Anomaly {
  kind: 'gap' | 'repeat' | 'no_base' | 'mismatch';
  root: string;
  expected: number;
  got: number;
}

/** What a root's diffs apply to: the description of its latest graph, when it has one. */
interface Held {
  sequence_number: number;
  /** Null when the graph cannot be described for diffs (a diff then has no base). */
  state: DiffState | null;
  /** The graph as received, for snapshots; built from `state` on demand after a diff. */
  graph: Graph | null;
}

export class LatestGraphs {
  private readonly held = new Map<string, Held>();
  readonly counts = { snapshots: 0, diffs: 0, verified: 0 };
  private readonly onAnomaly: (anomaly: Anomaly) => void;

  constructor(onAnomaly: (anomaly: Anomaly) => void) {
    this.onAnomaly = onAnomaly;
  }

  /** The latest graph of every root. */
  get latest(): Map<string, Graph> {
    return new Map([...this.held].map(([root, h]) => [root, h.graph ?? graphOfState(h)]));
  }

  /** Applies one snapshot; false when it was a repeat and skipped. */
  apply(graph: Graph): boolean {
    if (!this.inSequence(graph.root_id, graph.sequence_number)) return false;
    this.counts.snapshots++;
    this.hold(graph);
    return true;
  }

  private hold(graph: Graph): void {
    this.held.set(graph.root_id, { sequence_number: graph.sequence_number, state: describe(graph), graph });
  }

  /** Applies one diff; false when it was skipped (a repeat, or no base to apply it to). */
  applyDiff(view: CanonicalGraphDiffView): boolean {
    const root = view.rootId;
    const seq = Number(view.sequenceNumber);
    const held = this.held.get(root);
    if (!this.inSequence(root, seq)) return false;
    this.counts.diffs++;
    const carried = view.snapshot ? graphOf(view.snapshot) : null;
    if (!held?.state || held.sequence_number !== Number(view.baseSequenceNumber)) {
      if (!carried) {
        this.onAnomaly({
          kind: 'no_base',
          root,
          expected: Number(view.baseSequenceNumber),
          got: held?.sequence_number ?? 0,
        });
        this.held.delete(root);
        return false;
      }
      this.hold(carried);
      return true;
    }
    let state: DiffState;
    try {
      state = applyDiff(held.state, view.diff);
      if (buildTree(state).hash !== view.treeHash) throw new Error('tree hash differs');
      if (carried && buildTree(state).hash !== treeOf(carried).hash) throw new Error('carried tree differs');
    } catch {
      this.onAnomaly({ kind: 'mismatch', root, expected: seq, got: seq });
      this.held.delete(root);
      if (carried) this.hold(carried);
      return carried !== null;
    }
    if (carried) this.counts.verified++;
    this.held.set(root, { sequence_number: seq, state, graph: null });
    return true;
  }

  /** False for a repeat; flags a gap. The first message seen of a root may carry any number. */
  private inSequence(root: string, seq: number): boolean {
    const held = this.held.get(root);
    if (!held) return true;
    const expected = held.sequence_number + 1;
    if (seq < expected) {
      this.onAnomaly({ kind: 'repeat', root, expected, got: seq });
      return false;
    }
    if (seq > expected) this.onAnomaly({ kind: 'gap', root, expected, got: seq });
    return true;
  }
}

function treeOf(graph: Graph): SharedNode {
  return fromJsonTree({ ...graph.tree, children: graph.tree.children } as Parameters<typeof fromJsonTree>[0]);
}

/** A snapshot as the state diffs apply to; null when diffs cannot describe it. */
function describe(graph: Graph): DiffState | null {
  try {
    const tree = treeOf(graph);
    const meta = { block_number: '0', block_timestamp: '0', tx_hash: '', cursor: '' };
    return indexGraph(
      toWire({ root_id: graph.root_id, tree, canonical_space_ids: graph.canonical_space_ids, meta }),
    );
  } catch (err) {
    if (err instanceof NotDiffableError) return null;
    throw err;
  }
}

/** The expanded graph a state describes (iterative: trees can be thousands of levels deep). */
function graphOfState(held: Held): Graph {
  const state = held.state!;
  const node = (n: SharedNode): TreeNode => ({
    space_id: n.space,
    edge: n.edge,
    topic_id: n.topic,
    children: [],
  });
  const top = buildTree(state);
  const tree = node(top);
  const stack: Array<[SharedNode, TreeNode]> = [[top, tree]];
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const [from, to] = entry;
    for (const child of from.children) {
      const copy = node(child);
      to.children.push(copy);
      stack.push([child, copy]);
    }
  }
  return {
    root_id: state.root,
    sequence_number: held.sequence_number,
    canonical_space_ids: canonicalSpaceIds(state),
    tree,
  };
}

/** The decoder's view (stages/serialize/decode.ts) as a Graph. */
export function graphOf(view: CanonicalGraphUpdatedView): Graph {
  // Iterative: a canonical tree may be thousands of levels deep.
  const node = (v: JsonTreeNode): TreeNode => ({
    space_id: v.space_id,
    edge: v.edge,
    topic_id: v.topic_id ?? null,
    children: [],
  });
  const tree = node(view.tree);
  const stack = [[view.tree, tree] as const];
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const [from, to] = entry;
    for (const child of from.children) {
      const copy = node(child);
      to.children.push(copy);
      stack.push([child, copy]);
    }
  }
  return {
    root_id: view.root_id,
    sequence_number: Number(view.sequence_number),
    canonical_space_ids: view.canonical_space_ids,
    tree,
  };
}
