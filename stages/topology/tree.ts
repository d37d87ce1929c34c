/**
 * Canonical trees with structural sharing: every distinct subtree exists once (hash-consed),
 * so equal subtrees are the same object and comparing two trees is comparing two references.
 */
import { createHash } from 'node:crypto';

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
  private readonly table = new Map<string, TreeNode>();

  node(space: string, edge: EdgeKind, topic: string | null, children: readonly TreeNode[]): TreeNode {
    let key = `${space}|${edge}|${topic ?? ''}`;
    for (const c of children) key += `|${c.hash}`;
    const found = this.table.get(key);
    if (found) return found;
    let size = 1;
    for (const c of children) size += c.size;
    const hash = createHash('sha256').update(key).digest('hex').slice(0, 32);
    const made: TreeNode = { space, edge, topic, children, hash, size };
    this.table.set(key, made);
    return made;
  }

  get distinct(): number {
    return this.table.size;
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
