/**
 * A receiver's table outside the process: what a stage persists of a root's graph (its distinct
 * subtrees by hash, its canonical ids, hash, size and meta) and how it becomes a `GraphDelta`
 * again — a whole table (`base` ''), which any `DeltaReceiver` applies. Kept apart from
 * `graph-delta.ts` so the library's API stays as it is.
 */
import { type DeltaNode, DeltaSender, type GraphDelta, MissingSubtreeError } from './graph-delta.ts';
import { fromWire, type GraphWire } from './graph-wire.ts';
import { compareIds } from './ids.ts';
import type { EventMeta } from './tree.ts';

/** A root's graph without its nodes: what is stored beside the table of subtrees. */
export interface TableHead {
  hash: string;
  expanded_nodes: number;
  meta: EventMeta;
}

/**
 * The whole table of a graph kept as `nodes` (subtree hash → node; nodes no longer reachable
 * from `head.hash` are ignored, so a store may delete them late). MissingSubtreeError when a
 * reachable subtree is not there: the stored table is damaged, and nothing is guessed.
 */
export function wholeFromTable(
  root_id: string,
  head: TableHead,
  nodes: ReadonlyMap<string, DeltaNode>,
  ids: readonly string[],
): GraphDelta {
  const order: DeltaNode[] = [];
  const seen = new Set<string>([head.hash]);
  const top = nodes.get(head.hash);
  if (!top) throw new MissingSubtreeError(root_id, 'subtree', head.hash);
  const stack: Array<{ node: DeltaNode; next: number }> = [{ node: top, next: 0 }];
  while (stack.length > 0) {
    const at = stack[stack.length - 1]!;
    const child = at.node[4][at.next++];
    if (child === undefined) {
      order.push(at.node);
      stack.pop();
    } else if (!seen.has(child)) {
      seen.add(child);
      const node = nodes.get(child);
      if (!node) throw new MissingSubtreeError(root_id, 'subtree', child);
      stack.push({ node, next: 0 });
    }
  }
  return {
    root_id,
    hash: head.hash,
    base: '',
    expanded_nodes: head.expanded_nodes,
    ids_added: ids.slice().sort(compareIds),
    ids_removed: [],
    nodes: order,
    meta: head.meta,
  };
}

/** The whole table of a graph held as a wire (hashes computed again, as the sender made them). */
export function wholeFromWire(wire: GraphWire): GraphDelta {
  const { tree, canonical_space_ids, meta } = fromWire(wire);
  return new DeltaSender().delta(wire.root_id, tree, canonical_space_ids, meta);
}
