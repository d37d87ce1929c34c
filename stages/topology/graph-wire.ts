/**
 * The canonical graph as it travels between stages (transitive → canonical → serialize):
 * readable JSON, with the tree as a table of distinct subtrees so its size follows the
 * distinct nodes, not the expanded tree.
 *
 * The table holds the attached subtrees first (by member id), then the own tree's nodes (entries of their own,
 * even where an attached subtree has an equal one), whose anchors list the attached subtree's
 * entry among their children where the own tree has a reference: read as a table of subtrees,
 * it is the expanded tree (what serialize encodes, byte for byte).
 */
import { hash as digest } from 'node:crypto';
import type { EdgeKind, EventMeta, GraphTrees, TreeNode } from './tree.ts';
import { distinctPostorder, plainGraph, TreeInterner } from './tree.ts';

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
  /**
   * [member id, index in `nodes` of its attached subtree, that subtree's Merkle hash]; absent
   * when none. The own tree's entries follow the last attached subtree's.
   */
  attached?: [string, number, string][];
  meta: EventMeta;
}

export interface CanonicalGraph {
  root_id: string;
  tree: TreeNode;
  canonical_space_ids: string[];
  meta: EventMeta;
}

/** What `toWire` takes: the expanded tree, or the own tree with its attached subtrees. */
export interface GraphToSend extends Omit<CanonicalGraph, 'tree'> {
  tree: TreeNode | GraphTrees;
}

export function toWire(graph: GraphToSend): GraphWire {
  const trees = treesOf(graph.tree);
  const nodes: WireNode[] = [];
  const regions = new Map<TreeNode, number>();
  const attached: [string, number, string][] = [];
  for (const [member, subtree] of byMember(trees.attached)) {
    for (const n of newNodes(subtree, regions)) {
      regions.set(n, nodes.length);
      nodes.push([n.space, n.edge, n.topic ?? '', n.children.map((c) => regions.get(c)!)]);
    }
    attached.push([member, regions.get(subtree)!, subtree.hash]);
  }
  // Own-tree nodes: a reference stands for its member's attached subtree, listed above.
  const own = new Map<TreeNode, number>();
  const refs = trees.attached.size > 0;
  const childIndex = (c: TreeNode) =>
    refs && c.edge === 'topic' ? regions.get(trees.attached.get(c.space)!)! : own.get(c)!;
  for (const n of newNodes(trees.own, own, refs)) {
    own.set(n, nodes.length);
    nodes.push([n.space, n.edge, n.topic ?? '', n.children.map(childIndex)]);
  }
  return {
    root_id: graph.root_id,
    hash: trees.hash,
    expanded_nodes: trees.size,
    canonical_space_ids: graph.canonical_space_ids,
    nodes,
    ...(attached.length > 0 ? { attached } : {}),
    meta: graph.meta,
  };
}

/**
 * The Merkle hash of the expanded tree a wire carries (what a Kafka diff's tree_hash is): the
 * graph's hash when nothing is attached, else the own tree's entries hashed over the attached
 * subtrees' hashes — as `TreeInterner.node` would hash the expanded tree.
 */
export function treeHashOf(wire: GraphWire): string {
  if (!wire.attached || wire.attached.length === 0) return wire.hash;
  const hashes: string[] = [];
  let ownStart = 0;
  for (const [, at, subtree] of wire.attached) {
    hashes[at] = subtree;
    ownStart = Math.max(ownStart, at + 1);
  }
  for (let i = ownStart; i < wire.nodes.length; i++) {
    const [space, edge, topic, children] = wire.nodes[i]!;
    let key = `${space}|${edge}|${topic}`;
    for (const c of children) key += `|${hashes[c]}`;
    hashes[i] = digest('sha256', key, 'buffer').toString('hex', 0, 16);
  }
  return hashes[wire.nodes.length - 1]!;
}

/** Attachments in member id order, so equal graphs give equal tables whoever built them. */
export function byMember<T>(attached: ReadonlyMap<string, T>): [string, T][] {
  return [...attached].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function treesOf(tree: TreeNode | GraphTrees): GraphTrees {
  return 'own' in tree ? tree : plainGraph(tree);
}

/**
 * Distinct nodes below `root` not in `index` yet, children before parents; with `own`, a
 * reference is not one of them (it stands for an attached subtree).
 */
function newNodes(root: TreeNode, index: ReadonlyMap<TreeNode, number>, own = false): TreeNode[] {
  if (index.has(root)) return [];
  return distinctPostorder(root, (child) => (own && child.edge === 'topic') || index.has(child));
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
