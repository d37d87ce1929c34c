/**
 * The canonical graph as a change between stages: only the distinct subtrees (by hash) that the
 * receiver does not hold for that root, so an emission's size follows the change, not the graph.
 *
 * Sender and receiver keep the same table per root — the distinct subtrees of the last graph
 * sent — with reference counts: a subtree enters when a new graph first needs it and leaves when
 * no node of the table and no root refers to it any more. Both sides run the same counting on
 * the same sequence of deltas, so they agree on what the receiver holds without saying it.
 *
 * A receiver that lacks the base of a delta or a subtree it references (a restart, a failover,
 * a skipped entry) never guesses: it throws `MissingSubtreeError`. The recovery is a whole
 * table (`base` empty): the sender sends one after `forget(root)` (a restarted sender sends one
 * for every root anyway).
 */

import type { GraphWire, WireNode } from './graph-wire.ts';
import { compareIds } from './ids.ts';
import type { EdgeKind, EventMeta, TreeNode } from './tree.ts';

/** [hash, space_id, edge, topic_id ('' unless edge is topic), hashes of children]. */
export type DeltaNode = [string, string, EdgeKind, string, string[]];

export interface GraphDelta {
  root_id: string;
  /** Merkle hash of the tree (equal hashes ⇔ equal trees). */
  hash: string;
  /** Hash of the graph this applies to; '' when `nodes` are the whole table. */
  base: string;
  expanded_nodes: number;
  /** canonical_space_ids entered and left since the base (all of them when there is none). */
  ids_added: string[];
  ids_removed: string[];
  /** Subtrees the receiver lacks, children before parents; the tree's root comes last if new. */
  nodes: DeltaNode[];
  meta: EventMeta;
}

/** The receiver lacks what a delta builds on: recover with a whole table, never by guessing. */
export class MissingSubtreeError extends Error {
  readonly root: string;
  readonly missing: string;
  readonly reason: 'base' | 'subtree';

  constructor(root: string, reason: 'base' | 'subtree', missing: string) {
    super(
      reason === 'base'
        ? `graph delta of root ${root} builds on ${missing || 'nothing'}, which this stage does not hold`
        : `graph delta of root ${root} references subtree ${missing}, which this stage does not hold`,
    );
    this.name = 'MissingSubtreeError';
    this.root = root;
    this.reason = reason;
    this.missing = missing;
  }
}

interface Held {
  children: readonly string[];
  refs: number;
}

/** Distinct subtrees held for one root, reference counted; generic over what a node carries. */
class NodeTable<T extends Held> {
  readonly nodes = new Map<string, T>();
  root = '';

  has(hash: string): boolean {
    return this.nodes.has(hash);
  }

  /** Adds a node whose children are all held. */
  add(hash: string, node: T): void {
    this.nodes.set(hash, node);
    for (const c of node.children) this.nodes.get(c)!.refs++;
  }

  /** Makes `hash` the root: pinned before the old one is let go, so what they share stays. */
  moveRoot(hash: string): void {
    this.nodes.get(hash)!.refs++;
    const old = this.root;
    this.root = hash;
    if (old !== '') this.release(old);
  }

  private release(hash: string): void {
    const stack = [hash];
    for (let h = stack.pop(); h !== undefined; h = stack.pop()) {
      const node = this.nodes.get(h)!;
      if (--node.refs > 0) continue;
      this.nodes.delete(h);
      for (const c of node.children) stack.push(c);
    }
  }
}

interface SentNode extends Held {}

interface SentGraph {
  table: NodeTable<SentNode>;
  ids: readonly string[];
}

/** The sending side: one table per root, of what the receiver holds. */
export class DeltaSender {
  private readonly roots = new Map<string, SentGraph>();

  /** The delta from the last graph sent for this root (a whole table for the first one). */
  delta(root_id: string, tree: TreeNode, ids: readonly string[], meta: EventMeta): GraphDelta {
    let sent = this.roots.get(root_id);
    if (!sent) {
      sent = { table: new NodeTable(), ids: [] };
      this.roots.set(root_id, sent);
    }
    const { table } = sent;
    const base = table.root;
    const nodes: DeltaNode[] = [];
    for (const n of newSubtrees(tree, table)) {
      const children = n.children.map((c) => c.hash);
      table.add(n.hash, { children, refs: 0 });
      nodes.push([n.hash, n.space, n.edge, n.topic ?? '', children]);
    }
    table.moveRoot(tree.hash);
    const { added, removed } = idChanges(sent.ids, ids);
    sent.ids = ids;
    return {
      root_id,
      hash: tree.hash,
      base,
      expanded_nodes: tree.size,
      ids_added: added,
      ids_removed: removed,
      nodes,
      meta,
    };
  }

  /** The next delta of this root is a whole table (the receiver asked for one, or lost its own). */
  forget(root_id: string): void {
    this.roots.delete(root_id);
  }
}

/** Subtrees of `tree` not in `table`, children before parents (iterative: trees can be 100K deep). */
function newSubtrees(tree: TreeNode, table: NodeTable<Held>): TreeNode[] {
  if (table.has(tree.hash)) return [];
  const seen = new Set<string>([tree.hash]);
  const order: TreeNode[] = [];
  const stack: Array<{ node: TreeNode; next: number }> = [{ node: tree, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const child = top.node.children[top.next++];
    if (child === undefined) {
      order.push(top.node);
      stack.pop();
    } else if (!table.has(child.hash) && !seen.has(child.hash)) {
      seen.add(child.hash);
      stack.push({ node: child, next: 0 });
    }
  }
  return order;
}

/** Both lists in id order; a list that did not change is the same array (callers share them). */
function idChanges(
  before: readonly string[],
  after: readonly string[],
): { added: string[]; removed: string[] } {
  const added: string[] = [];
  const removed: string[] = [];
  if (before === after) return { added, removed };
  let i = 0;
  let j = 0;
  while (i < before.length || j < after.length) {
    const order = i === before.length ? 1 : j === after.length ? -1 : compareIds(before[i]!, after[j]!);
    if (order < 0) removed.push(before[i++]!);
    else if (order > 0) added.push(after[j++]!);
    else {
      i++;
      j++;
    }
  }
  return { added, removed };
}

interface HeldNode extends Held {
  space: string;
  edge: EdgeKind;
  topic: string;
}

interface HeldGraph {
  table: NodeTable<HeldNode>;
  ids: string[];
  expanded: number;
  meta: EventMeta;
}

/** The receiving side: one table per root, rebuilt from the deltas in the order they were sent. */
export class DeltaReceiver {
  private readonly roots = new Map<string, HeldGraph>();

  /** Applies a delta whole or not at all; MissingSubtreeError when it builds on what is not held. */
  apply(delta: GraphDelta): void {
    const held = this.roots.get(delta.root_id);
    const current = held?.table.root ?? '';
    if (delta.base !== current && delta.base !== '')
      throw new MissingSubtreeError(delta.root_id, 'base', delta.base);
    const table = delta.base === '' ? new NodeTable<HeldNode>() : held!.table;
    // Checked before the first change, so a refused delta leaves the table as it was.
    const arriving = new Set<string>();
    for (const [hash, , , , children] of delta.nodes) {
      for (const c of children) {
        if (!table.has(c) && !arriving.has(c)) throw new MissingSubtreeError(delta.root_id, 'subtree', c);
      }
      arriving.add(hash);
    }
    if (!table.has(delta.hash) && !arriving.has(delta.hash))
      throw new MissingSubtreeError(delta.root_id, 'subtree', delta.hash);
    for (const [hash, space, edge, topic, children] of delta.nodes) {
      if (!table.has(hash)) table.add(hash, { space, edge, topic, children, refs: 0 });
    }
    table.moveRoot(delta.hash);
    const ids = delta.base === '' ? delta.ids_added.slice().sort(compareIds) : applyIds(held!.ids, delta);
    this.roots.set(delta.root_id, { table, ids, expanded: delta.expanded_nodes, meta: delta.meta });
  }

  /** Hash of the graph held for `root`, '' when none. */
  hashOf(root: string): string {
    return this.roots.get(root)?.table.root ?? '';
  }

  /** The graph held for `root` as the whole distinct-subtree table (what serialize encodes). */
  wire(root: string): GraphWire {
    const held = this.roots.get(root);
    if (!held) throw new MissingSubtreeError(root, 'base', '');
    return {
      root_id: root,
      hash: held.table.root,
      expanded_nodes: held.expanded,
      canonical_space_ids: held.ids,
      nodes: wireTable(held.table),
      meta: held.meta,
    };
  }

  forget(root: string): void {
    this.roots.delete(root);
  }

  /** Whether the graph held for `root` has the subtree `hash` (a stage composing deltas asks). */
  has(root: string, hash: string): boolean {
    return this.roots.get(root)?.table.has(hash) ?? false;
  }
}

function applyIds(ids: readonly string[], delta: GraphDelta): string[] {
  const gone = new Set(delta.ids_removed);
  const added = delta.ids_added.slice().sort(compareIds);
  const out: string[] = [];
  let j = 0;
  for (const id of ids) {
    if (gone.has(id)) continue;
    while (j < added.length && added[j]! < id) out.push(added[j++]!);
    out.push(id);
  }
  while (j < added.length) out.push(added[j++]!);
  return out;
}

/** Children before parents, each distinct subtree once; the root last. */
function wireTable(table: NodeTable<HeldNode>): WireNode[] {
  const index = new Map<string, number>();
  const out: WireNode[] = [];
  const stack: Array<{ hash: string; next: number }> = [{ hash: table.root, next: 0 }];
  index.set(table.root, -1);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const node = table.nodes.get(top.hash)!;
    const child = node.children[top.next++];
    if (child === undefined) {
      index.set(top.hash, out.length);
      out.push([node.space, node.edge, node.topic, node.children.map((c) => index.get(c)!)]);
      stack.pop();
    } else if (!index.has(child)) {
      index.set(child, -1);
      stack.push({ hash: child, next: 0 });
    }
  }
  return out;
}
