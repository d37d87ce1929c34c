/**
 * The canonical graph as a change between stages: only the distinct subtrees (by hash) that the
 * receiver does not hold for that root, so an emission's size follows the change, not the graph.
 *
 * A graph is its own tree plus attached subtrees by member (GraphTrees), so a change inside one
 * attached subtree ships that subtree's new nodes and one table entry, not the anchors that refer
 * to it. Sender and receiver keep the same table per root — the distinct subtrees of the last
 * graph sent, own tree and attached subtrees alike — with reference counts: a subtree enters when
 * a new graph first needs it and leaves when no node of the table, no attachment and no root
 * refers to it any more. Both sides run the same counting on the same sequence of deltas, so they
 * agree on what the receiver holds without saying it.
 *
 * A receiver that lacks the base of a delta or a subtree it references (a restart, a failover,
 * a skipped entry) never guesses: it throws `MissingSubtreeError`. The recovery is a whole
 * table (`base` empty): the sender sends one after `forget(root)` (a restarted sender sends one
 * for every root anyway).
 */

import type { GraphWire, WireNode } from './graph-wire.ts';
import { byMember, treesOf } from './graph-wire.ts';
import { compareIds } from './ids.ts';
import type { EdgeKind, EventMeta, GraphTrees, TreeNode } from './tree.ts';
import { distinctPostorder } from './tree.ts';

/** [hash, space_id, edge, topic_id ('' unless edge is topic), hashes of children]. */
export type DeltaNode = [string, string, EdgeKind, string, string[]];

export interface GraphDelta {
  root_id: string;
  /** Hash of the graph, own tree and attached subtrees (equal hashes ⇔ equal expanded trees). */
  hash: string;
  /** Hash of the graph this applies to; '' when `nodes` are the whole table. */
  base: string;
  /** Hash of the own tree's root (the expanded tree's when there is no attachment). */
  own: string;
  /** [member id, subtree hash] attached now and not so in the base (all of them without a base). */
  attached: [string, string][];
  /** Members attached in the base and no longer. */
  detached: string[];
  expanded_nodes: number;
  /** canonical_space_ids entered and left since the base (all of them when there is none). */
  ids_added: string[];
  ids_removed: string[];
  /** Subtrees the receiver lacks, children before parents. */
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
  /** Hash of the graph, of its own tree, and its attached subtree hashes by member. */
  hash = '';
  own = '';
  attached = new Map<string, string>();

  has(hash: string): boolean {
    return this.nodes.has(hash);
  }

  /** Adds a node whose children are all held. */
  add(hash: string, node: T): void {
    this.nodes.set(hash, node);
    for (const c of node.children) this.nodes.get(c)!.refs++;
  }

  /**
   * Moves to the next graph: its own tree and changed attachments are pinned before the old
   * ones are let go, so what they share stays.
   */
  move(hash: string, own: string, attached: readonly [string, string][], detached: readonly string[]): void {
    this.pin(own);
    for (const [, subtree] of attached) this.pin(subtree);
    const old = [this.own];
    this.hash = hash;
    this.own = own;
    for (const [member, subtree] of attached) {
      const before = this.attached.get(member);
      if (before !== undefined) old.push(before);
      this.attached.set(member, subtree);
    }
    for (const member of detached) {
      old.push(this.attached.get(member)!);
      this.attached.delete(member);
    }
    for (const h of old) if (h !== '') this.release(h);
  }

  private pin(hash: string): void {
    this.nodes.get(hash)!.refs++;
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

interface SentGraph {
  table: NodeTable<Held>;
  ids: readonly string[];
}

/** The sending side: one table per root, of what the receiver holds. */
export class DeltaSender {
  private readonly roots = new Map<string, SentGraph>();

  /**
   * The delta from the last graph sent for this root (a whole table for the first one). `tree` is
   * the graph as own tree + attached subtrees, or an expanded tree (a graph with no attachment).
   */
  delta(root_id: string, tree: TreeNode | GraphTrees, ids: readonly string[], meta: EventMeta): GraphDelta {
    const graph = treesOf(tree);
    let sent = this.roots.get(root_id);
    if (!sent) {
      sent = { table: new NodeTable(), ids: [] };
      this.roots.set(root_id, sent);
    }
    const { table } = sent;
    const base = table.hash;
    const nodes: DeltaNode[] = [];
    const ship = (root: TreeNode) => {
      for (const n of newSubtrees(root, table)) {
        const children = n.children.map((c) => c.hash);
        table.add(n.hash, { children, refs: 0 });
        nodes.push([n.hash, n.space, n.edge, n.topic ?? '', children]);
      }
    };
    const attached: [string, string][] = [];
    for (const [member, subtree] of graph.attached) {
      if (table.attached.get(member) === subtree.hash) continue;
      ship(subtree);
      attached.push([member, subtree.hash]);
    }
    const detached = [...table.attached.keys()].filter((m) => !graph.attached.has(m));
    ship(graph.own);
    table.move(graph.hash, graph.own.hash, attached, detached);
    const { added, removed } = idChanges(sent.ids, ids);
    sent.ids = ids;
    return {
      root_id,
      hash: graph.hash,
      base,
      own: graph.own.hash,
      attached,
      detached,
      expanded_nodes: graph.size,
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

/** Subtrees of `tree` not in `table`, children before parents, by hash (equal subtrees may be two objects). */
function newSubtrees(tree: TreeNode, table: NodeTable<Held>): TreeNode[] {
  if (table.has(tree.hash)) return [];
  return distinctPostorder(
    tree,
    (child) => table.has(child.hash),
    (node) => node.hash,
  );
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
    const current = held?.table.hash ?? '';
    if (delta.base !== current && delta.base !== '')
      throw new MissingSubtreeError(delta.root_id, 'base', delta.base);
    const table = delta.base === '' ? new NodeTable<HeldNode>() : held!.table;
    checkDelta(delta, table);
    for (const [hash, space, edge, topic, children] of delta.nodes) {
      if (!table.has(hash)) table.add(hash, { space, edge, topic, children, refs: 0 });
    }
    table.move(delta.hash, delta.own, delta.attached, delta.detached);
    const ids = delta.base === '' ? delta.ids_added.slice().sort(compareIds) : applyIds(held!.ids, delta);
    this.roots.set(delta.root_id, { table, ids, expanded: delta.expanded_nodes, meta: delta.meta });
  }

  /** Hash of the graph held for `root`, '' when none. */
  hashOf(root: string): string {
    return this.roots.get(root)?.table.hash ?? '';
  }

  /** The graph held for `root` as the whole distinct-subtree table (what serialize encodes). */
  wire(root: string): GraphWire {
    const held = this.roots.get(root);
    if (!held) throw new MissingSubtreeError(root, 'base', '');
    const { nodes, attached } = wireTable(held.table);
    return {
      root_id: root,
      hash: held.table.hash,
      expanded_nodes: held.expanded,
      canonical_space_ids: held.ids,
      nodes,
      ...(attached.length > 0 ? { attached } : {}),
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

  /** The graph held for `root` without its nodes; undefined when none is held. */
  head(root: string): GraphHead | undefined {
    const held = this.roots.get(root);
    if (!held) return undefined;
    const { table } = held;
    return {
      hash: table.hash,
      own: table.own,
      attached: byMember(table.attached),
      expanded_nodes: held.expanded,
      meta: held.meta,
    };
  }

  /** The graph held for `root` as a whole table (`base` ''), which any receiver applies. */
  whole(root: string): GraphDelta {
    const held = this.roots.get(root);
    const head = this.head(root);
    if (!held || !head) throw new MissingSubtreeError(root, 'base', '');
    const nodes = wholeTable(root, head, (hash) => {
      const n = held.table.nodes.get(hash);
      return n && [hash, n.space, n.edge, n.topic, n.children.slice()];
    });
    return wholeDelta(root, head, nodes, held.ids);
  }
}

/** A graph without its nodes: what a store keeps beside its table of subtrees. */
export interface GraphHead {
  hash: string;
  own: string;
  /** Every attached subtree, [member id, hash], by member id. */
  attached: [string, string][];
  expanded_nodes: number;
  meta: EventMeta;
}

/**
 * The distinct subtrees of the graph `head` names, children before parents, looked up by hash
 * (iterative: trees can be 100K deep). MissingSubtreeError when one is not there: never guessed.
 */
function wholeTable(
  root_id: string,
  head: GraphHead,
  lookup: (hash: string) => DeltaNode | undefined,
): DeltaNode[] {
  const order: DeltaNode[] = [];
  const seen = new Set<string>();
  for (const top of [...head.attached.map(([, subtree]) => subtree), head.own]) {
    if (seen.has(top)) continue;
    seen.add(top);
    const first = lookup(top);
    if (!first) throw new MissingSubtreeError(root_id, 'subtree', top);
    const stack: Array<{ node: DeltaNode; next: number }> = [{ node: first, next: 0 }];
    while (stack.length > 0) {
      const at = stack[stack.length - 1]!;
      const child = at.node[4][at.next++];
      if (child === undefined) {
        order.push(at.node);
        stack.pop();
      } else if (!seen.has(child)) {
        seen.add(child);
        const node = lookup(child);
        if (!node) throw new MissingSubtreeError(root_id, 'subtree', child);
        stack.push({ node, next: 0 });
      }
    }
  }
  return order;
}

/**
 * The whole table of a graph a store kept as `nodes` (subtree hash → node; nodes no longer
 * reachable from the head are ignored, so a store may delete them late). MissingSubtreeError
 * when a reachable subtree is not there: the stored table is damaged, and nothing is guessed.
 */
export function wholeFromTable(
  root_id: string,
  head: GraphHead,
  nodes: ReadonlyMap<string, DeltaNode>,
  ids: readonly string[],
): GraphDelta {
  return wholeDelta(
    root_id,
    head,
    wholeTable(root_id, head, (h) => nodes.get(h)),
    ids,
  );
}

/** A whole-table delta (`base` ''): every attachment, every id. */
function wholeDelta(
  root_id: string,
  head: GraphHead,
  nodes: DeltaNode[],
  ids: readonly string[],
): GraphDelta {
  return {
    root_id,
    hash: head.hash,
    base: '',
    own: head.own,
    attached: head.attached,
    detached: [],
    expanded_nodes: head.expanded_nodes,
    ids_added: ids.slice().sort(compareIds),
    ids_removed: [],
    nodes,
    meta: head.meta,
  };
}

/** Checked before the first change, so a refused delta leaves the table as it was. */
function checkDelta(delta: GraphDelta, table: NodeTable<HeldNode>): void {
  const arriving = new Set<string>();
  const held = (h: string) => table.has(h) || arriving.has(h);
  for (const [hash, , , , children] of delta.nodes) {
    for (const c of children) if (!held(c)) throw new MissingSubtreeError(delta.root_id, 'subtree', c);
    arriving.add(hash);
  }
  for (const h of [delta.own, ...delta.attached.map(([, subtree]) => subtree)]) {
    if (!held(h)) throw new MissingSubtreeError(delta.root_id, 'subtree', h);
  }
  for (const member of delta.detached) {
    if (delta.base !== '' && !table.attached.has(member))
      throw new MissingSubtreeError(delta.root_id, 'subtree', member);
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

/**
 * The table as `toWire` lays it out: attached subtrees first, then the own tree, whose references
 * point at the attached subtree's entry. Each distinct subtree once, children before parents.
 */
function wireTable(table: NodeTable<HeldNode>): { nodes: WireNode[]; attached: [string, number, string][] } {
  const regions = new Map<string, number>();
  const nodes: WireNode[] = [];
  const attached: [string, number, string][] = [];
  for (const [member, subtree] of byMember(table.attached)) {
    walk(table, subtree, regions, nodes, (c) => regions.get(c)!);
    attached.push([member, regions.get(subtree)!, subtree]);
  }
  const own = new Map<string, number>();
  const refs = table.attached.size > 0;
  const resolve = (c: string) => {
    const node = table.nodes.get(c)!;
    return refs && node.edge === 'topic' ? regions.get(table.attached.get(node.space)!)! : own.get(c)!;
  };
  walk(table, table.own, own, nodes, resolve, refs);
  return { nodes, attached };
}

/** Appends the nodes below `root` not indexed yet; with `refs`, a reference is not descended. */
function walk(
  table: NodeTable<HeldNode>,
  root: string,
  index: Map<string, number>,
  out: WireNode[],
  childIndex: (hash: string) => number,
  refs = false,
): void {
  if (index.has(root)) return;
  const stack: Array<{ hash: string; next: number }> = [{ hash: root, next: 0 }];
  index.set(root, -1);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const node = table.nodes.get(top.hash)!;
    const child = node.children[top.next++];
    if (child === undefined) {
      index.set(top.hash, out.length);
      out.push([node.space, node.edge, node.topic, node.children.map(childIndex)]);
      stack.pop();
    } else if (!index.has(child) && !(refs && table.nodes.get(child)!.edge === 'topic')) {
      index.set(child, -1);
      stack.push({ hash: child, next: 0 });
    }
  }
}
