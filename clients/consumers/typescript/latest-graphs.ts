/**
 * The latest canonical graph per root, kept from a stream of CanonicalGraphUpdated messages,
 * with the per-root sequence_number contract checked (1, 2, 3… dense): a number at or below the
 * one already held is a repeat (skipped: the graph held is newer or the same), a number past the
 * next one is a gap (flagged, and applied: every message is the root's full graph, so the newer
 * one supersedes whatever was lost).
 */
import type { CanonicalGraphUpdatedView } from '../../../stages/serialize/decode.ts';
import type { JsonTreeNode } from '../../../stages/topology/graph-wire.ts';

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
  kind: 'gap' | 'repeat';
  root: string;
  expected: number;
  got: number;
}

export class LatestGraphs {
  readonly latest = new Map<string, Graph>();
  private readonly onAnomaly: (anomaly: Anomaly) => void;

  constructor(onAnomaly: (anomaly: Anomaly) => void) {
    this.onAnomaly = onAnomaly;
  }

  /** Applies one update; false when it was a repeat and skipped. */
  apply(graph: Graph): boolean {
    const held = this.latest.get(graph.root_id);
    // The first update seen of a root may carry any number: on the compacted topic a consumer
    // starting from the beginning finds only the root's latest update of the cleaned part.
    if (held) {
      const expected = held.sequence_number + 1;
      const anomaly = { root: graph.root_id, expected, got: graph.sequence_number };
      if (graph.sequence_number < expected) {
        this.onAnomaly({ kind: 'repeat', ...anomaly });
        return false;
      }
      if (graph.sequence_number > expected) this.onAnomaly({ kind: 'gap', ...anomaly });
    }
    this.latest.set(graph.root_id, graph);
    return true;
  }
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
