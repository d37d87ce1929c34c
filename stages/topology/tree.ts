/**
 * Canonical trees with structural sharing: every distinct subtree exists once (hash-consed),
 * so equal subtrees are the same object and comparing two trees is comparing two references.
 */
import { hash } from 'node:crypto';

export type EdgeKind = 'root' | 'verified' | 'related' | 'topic';

export interface TreeNode {
  readonly space: string;
  readonly edge: EdgeKind;
  /** Set only when edge is 'topic'. */
  readonly topic: string | null;
  readonly children: readonly TreeNode[];
  /** Merkle hash over (space, edge, topic, children's hashes), hex. */
  readonly hash: string;
  /** Node count of the expanded tree below and including this node. */
  readonly size: number;
}

/** Blockchain metadata of the latest event a graph includes; u64 values as decimal strings. */
export interface EventMeta {
  block_number: string;
  block_timestamp: string;
  tx_hash: string;
  cursor: string;
  created_by?: string;
}

/** Interns nodes: one object per distinct (space, edge, topic, children) structure. */
export class TreeInterner {
  /** Keyed by the node's hash: a short key, and enough to re-add a node when retaining. */
  private table = new Map<string, TreeNode>();

  node(space: string, edge: EdgeKind, topic: string | null, children: readonly TreeNode[]): TreeNode {
    let key = `${space}|${edge}|${topic ?? ''}`;
    for (const c of children) key += `|${c.hash}`;
    const digest = hash('sha256', key, 'hex').slice(0, 32);
    const found = this.table.get(digest);
    if (found) return found;
    let size = 1;
    for (const c of children) size += c.size;
    const made: TreeNode = { space, edge, topic, children, hash: digest, size };
    this.table.set(digest, made);
    return made;
  }

  get distinct(): number {
    return this.table.size;
  }

  /**
   * Forgets every node not in the given trees, so the table follows what is still in use
   * instead of everything ever built. Nodes dropped here stay valid; an equal node built later
   * is a new object with the same hash.
   */
  retain(trees: Iterable<TreeNode>): void {
    const table = new Map<string, TreeNode>();
    const stack: TreeNode[] = [];
    for (const tree of trees) {
      for (let n: TreeNode | undefined = tree; n; n = stack.pop()) {
        if (table.has(n.hash)) continue;
        table.set(n.hash, n);
        for (const c of n.children) stack.push(c);
      }
    }
    this.table = table;
  }
}

/** Visits each distinct node once, children before parents (iterative: trees can be 100K deep). */
export function distinctPostorder(root: TreeNode): TreeNode[] {
  const seen = new Set<TreeNode>([root]);
  const order: TreeNode[] = [];
  const stack: Array<{ node: TreeNode; next: number }> = [{ node: root, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const child = top.node.children[top.next++];
    if (child === undefined) {
      order.push(top.node);
      stack.pop();
    } else if (!seen.has(child)) {
      seen.add(child);
      stack.push({ node: child, next: 0 });
    }
  }
  return order;
}

/** Builds the shared-subtree form of an expanded JSON tree (iteratively: trees can be very deep). */
export function fromJsonTree(
  root: { space_id: string; edge: EdgeKind; topic_id?: string | null; children: unknown[] },
  interner = new TreeInterner(),
): TreeNode {
  type Json = typeof root;
  const stack: Array<{ json: Json; built: TreeNode[] }> = [{ json: root, built: [] }];
  for (;;) {
    const top = stack[stack.length - 1]!;
    const next = top.json.children[top.built.length] as Json | undefined;
    if (next) {
      stack.push({ json: next, built: [] });
      continue;
    }
    const { json, built } = top;
    const node = interner.node(json.space_id, json.edge, json.edge === 'topic' ? (json.topic_id ?? null) : null, built);
    stack.pop();
    const parent = stack[stack.length - 1];
    if (!parent) return node;
    parent.built.push(node);
  }
}
