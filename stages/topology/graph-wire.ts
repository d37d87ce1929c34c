/**
 * The canonical graph as it travels between stages (transitive → canonical → serialize):
 * readable JSON, with the tree as a table of distinct subtrees so its size follows the
 * distinct nodes, not the expanded tree.
 */
import type { EdgeKind, EventMeta, TreeNode } from './tree.ts';
import { distinctPostorder, TreeInterner } from './tree.ts';

/** [space_id, edge, topic_id ('' unless edge is topic), indexes of children in `nodes`]. */
export type WireNode = [string, EdgeKind, string, number[]];

export interface GraphWire {
  root_id: string;
  /** Merkle hash of the tree: equal hashes ⇔ equal trees. */
  hash: string;
  expanded_nodes: number;
  canonical_space_ids: string[];
  /** Distinct subtrees, children before parents; the last one is the tree's root. */
  nodes: WireNode[];
  meta: EventMeta;
}

export interface CanonicalGraph {
  root_id: string;
  tree: TreeNode;
  canonical_space_ids: string[];
  meta: EventMeta;
}

export function toWire(graph: CanonicalGraph): GraphWire {
  const order = distinctPostorder(graph.tree);
  const index = new Map<TreeNode, number>();
  const nodes = order.map((n, i): WireNode => {
    index.set(n, i);
    return [n.space, n.edge, n.topic ?? '', n.children.map((c) => index.get(c)!)];
  });
  return {
    root_id: graph.root_id,
    hash: graph.tree.hash,
    expanded_nodes: graph.tree.size,
    canonical_space_ids: graph.canonical_space_ids,
    nodes,
    meta: graph.meta,
  };
}

export function fromWire(wire: GraphWire, interner = new TreeInterner()): CanonicalGraph {
  const built: TreeNode[] = [];
  for (const [space, edge, topic, children] of wire.nodes) {
    built.push(
      interner.node(
        space,
        edge,
        topic === '' ? null : topic,
        children.map((i) => built[i]!),
      ),
    );
  }
  const tree = built[built.length - 1];
  if (!tree) throw new Error(`graph of root ${wire.root_id} has no nodes`);
  return { root_id: wire.root_id, tree, canonical_space_ids: wire.canonical_space_ids, meta: wire.meta };
}

/** The `--json` view: `{space_id, edge, topic_id?, children}` per node, expanded. */
export interface JsonTreeNode {
  space_id: string;
  edge: EdgeKind;
  topic_id?: string;
  children: JsonTreeNode[];
}
