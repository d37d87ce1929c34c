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

const NO_CHILDREN: readonly TreeNode[] = Object.freeze([]);

/**
 * Interns nodes: one object per distinct (space, edge, topic, children) structure.
 *
 * A long-lived interner keeps its table bounded with generations: once `generationSize`
 * nodes were added, the current table becomes the previous one and the one before is dropped
 * (O(1), no pause). A lookup that hits the previous table moves the node forward. A node
 * neither built nor looked up for two generations is forgotten: it stays valid, and an equal
 * node built later is a new object with the same hash — identity is then no longer complete,
 * hashes and structure always are.
 */
export class TreeInterner {
  /** Unbounded unless the owner sets it (a short-lived interner needs no limit). */
  generationSize = Number.POSITIVE_INFINITY;
  /** Nodes created so far: the work interning did (hashing happens for every call, though). */
  created = 0;
  /** Keyed by the node's hash, a short key. */
  private current = new Map<string, TreeNode>();
  private previous = new Map<string, TreeNode>();

  node(space: string, edge: EdgeKind, topic: string | null, children: readonly TreeNode[]): TreeNode {
    let key = `${space}|${edge}|${topic ?? ''}`;
    for (const c of children) key += `|${c.hash}`;
    // Half the digest, as a flat string: a slice would keep the whole 64-char digest alive.
    const digest = hash('sha256', key, 'buffer').toString('hex', 0, 16);
    const found = this.current.get(digest) ?? this.previous.get(digest);
    if (found) {
      if (this.previous.delete(digest)) this.remember(found);
      return found;
    }
    let size = 1;
    for (const c of children) size += c.size;
    // An exactly sized copy: callers build children by push, which leaves slack in the array.
    const own = children.length === 0 ? NO_CHILDREN : children.slice();
    const made: TreeNode = { space, edge, topic, children: own, hash: digest, size };
    this.created++;
    this.remember(made);
    return made;
  }

  /**
   * The reference to `member`'s attached subtree that an own tree holds where the expanded tree
   * has that subtree (edge topic, no children). Its hash is of its own kind, so it never equals a
   * node of an attached subtree: a table holding both stays unambiguous.
   */
  ref(member: string, topic: string): TreeNode {
    const digest = hash('sha256', `ref|${member}|${topic}`, 'buffer').toString('hex', 0, 16);
    const found = this.current.get(digest) ?? this.previous.get(digest);
    if (found) {
      if (this.previous.delete(digest)) this.remember(found);
      return found;
    }
    const made: TreeNode = {
      space: member,
      edge: 'topic',
      topic,
      children: NO_CHILDREN,
      hash: digest,
      size: 1,
    };
    this.created++;
    this.remember(made);
    return made;
  }

  get distinct(): number {
    return this.current.size + this.previous.size;
  }

  private remember(node: TreeNode): void {
    if (this.current.size >= this.generationSize) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(node.hash, node);
  }
}

/**
 * A canonical graph as phase 1's own tree plus phase 2's attached subtrees (DESIGN §3). In the own
 * tree every topic-edge node is a reference (`TreeInterner.ref`): the expanded tree has there the
 * attached subtree of that member. A change inside one attached subtree then changes one entry
 * of `attached`, not every anchor referring to it and their ancestors.
 */
export interface GraphTrees {
  readonly own: TreeNode;
  /** Attached subtree per member id (its root's edge is topic); exactly the members referenced. */
  readonly attached: ReadonlyMap<string, TreeNode>;
  /** Covers the own tree and every attached subtree: equal hashes ⇔ equal expanded trees. */
  readonly hash: string;
  /** Node count of the expanded tree. */
  readonly size: number;
}

/**
 * An expanded tree as a graph with no attachment table: its own tree then holds no reference
 * (references exist only beside attached subtrees), and its hash is the tree's.
 */
export function plainGraph(tree: TreeNode): GraphTrees {
  return { own: tree, attached: NO_ATTACHMENTS, hash: tree.hash, size: tree.size };
}

const NO_ATTACHMENTS: ReadonlyMap<string, TreeNode> = new Map();

/** The hash of a graph: the own tree's alone without attachments, else over both. */
export function graphHash(own: string, attachedDigest: string): string {
  if (attachedDigest === '') return own;
  return hash('sha256', `graph|${own}|${attachedDigest}`, 'buffer').toString('hex', 0, 16);
}

/**
 * An order-free digest of the attachments, kept up to date one member at a time: the sum mod
 * 2^128 of a hash per (member, subtree hash). '' for none.
 */
export class AttachedDigest {
  private sum = 0n;
  private count = 0;

  add(member: string, subtree: string): void {
    this.sum = (this.sum + entryDigest(member, subtree)) & MASK_128;
    this.count++;
  }

  remove(member: string, subtree: string): void {
    this.sum = (this.sum - entryDigest(member, subtree)) & MASK_128;
    this.count--;
  }

  get value(): string {
    return this.count === 0 ? '' : `${this.count}:${this.sum.toString(16)}`;
  }
}

const MASK_128 = (1n << 128n) - 1n;

function entryDigest(member: string, subtree: string): bigint {
  return BigInt(`0x${hash('sha256', `${member}|${subtree}`, 'buffer').toString('hex', 0, 16)}`);
}

/** The digest of a whole attachment table (what a receiver rebuilds). */
export function digestOf(attached: Iterable<[string, string]>): string {
  const digest = new AttachedDigest();
  for (const [member, subtree] of attached) digest.add(member, subtree);
  return digest.value;
}

/**
 * The expanded tree of a graph, hash-consed: the same objects and hashes as a tree built with the
 * attached subtrees in place. Costs the own tree's distinct nodes.
 */
export function expandGraph(graph: GraphTrees, interner = new TreeInterner()): TreeNode {
  if (graph.attached.size === 0) return graph.own;
  const expand = (node: TreeNode) => {
    if (node.edge === 'topic') {
      const subtree = graph.attached.get(node.space);
      if (!subtree) throw new Error(`graph references ${node.space}, which it does not attach`);
      done.set(node, subtree);
      return;
    }
    let same = true;
    const children = node.children.map((c) => {
      const e = done.get(c)!;
      if (e !== c) same = false;
      return e;
    });
    done.set(node, same ? node : interner.node(node.space, node.edge, node.topic, children));
  };
  const done = new Map<TreeNode, TreeNode>();
  const stack: Array<{ node: TreeNode; next: number }> = [{ node: graph.own, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const child = top.node.children[top.next++];
    if (child === undefined) {
      expand(top.node);
      stack.pop();
    } else if (!done.has(child)) {
      stack.push({ node: child, next: 0 });
    }
  }
  return done.get(graph.own)!;
}

/**
 * Visits each distinct node once (by `key`: identity unless given), children before parents;
 * `skip` leaves a child, and what is below it, out. Iterative: trees can be 100K deep.
 */
export function distinctPostorder(
  root: TreeNode,
  skip: (child: TreeNode) => boolean = () => false,
  key: (node: TreeNode) => unknown = (node) => node,
): TreeNode[] {
  const seen = new Set<unknown>([key(root)]);
  const order: TreeNode[] = [];
  const stack: Array<{ node: TreeNode; next: number }> = [{ node: root, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const child = top.node.children[top.next++];
    if (child === undefined) {
      order.push(top.node);
      stack.pop();
    } else if (!seen.has(key(child)) && !skip(child)) {
      seen.add(key(child));
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
    const node = interner.node(
      json.space_id,
      json.edge,
      json.edge === 'topic' ? (json.topic_id ?? null) : null,
      built,
    );
    stack.pop();
    const parent = stack[stack.length - 1];
    if (!parent) return node;
    parent.built.push(node);
  }
}
