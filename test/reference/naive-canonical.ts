/**
 * A deliberately plain implementation of DESIGN §3, written straight from the text: nested
 * objects, full recomputation, no sharing. Tests compare the real implementation against it.
 */
import type { TopologyEvent } from '../../stages/topology/events.ts';
import type { EdgeKind, TreeNode } from '../../stages/topology/tree.ts';

/** The fixtures' JSON shape of a tree. */
export interface PlainNode {
  space_id: string;
  edge: EdgeKind;
  topic_id: string | null;
  children: PlainNode[];
}

export interface PlainCanonical {
  tree: PlainNode;
  canonical_space_ids: string[];
}

interface Candidate {
  target: string;
  edge: 'verified' | 'related' | 'topic';
  topic: string | null;
}

const KIND_ORDER = { verified: 0, related: 1, topic: 2 };

export class NaiveTopology {
  private readonly topicOf = new Map<string, string>();
  /** `${source}|${target}|${kind}` */
  private readonly edges = new Set<string>();
  /** `${source}|${topic}` */
  private readonly topicEdges = new Set<string>();

  apply(event: TopologyEvent): 'applied' | 'noop' | 'conflict' {
    if (event.event_type === 'space.created') {
      const known = this.topicOf.get(event.space_id);
      if (known !== undefined) return known === event.topic_id ? 'noop' : 'conflict';
      this.topicOf.set(event.space_id, event.topic_id);
      return 'applied';
    }
    const ext = event.extension;
    const set = ext.kind === 'subtopic' ? this.topicEdges : this.edges;
    const key =
      ext.kind === 'subtopic'
        ? `${event.source_space_id}|${ext.target_topic_id}`
        : `${event.source_space_id}|${ext.target_space_id}|${ext.kind}`;
    const extend = event.event_type === 'space.trust_extended';
    if (set.has(key) === extend) return 'noop';
    if (extend) set.add(key);
    else set.delete(key);
    return 'applied';
  }

  canonical(root: string): PlainCanonical {
    const index = this.index();
    const phase1 = transitive(root, index, false);
    const inC = phase1.visited;
    for (const edge of [...this.topicEdges].sort()) {
      const [s, topic] = edge.split('|') as [string, string];
      const sNode = phase1.nodes.get(s);
      if (!sNode) continue;
      for (const m of index.members.get(topic) ?? []) {
        if (m === s || !inC.has(m)) continue;
        const filtered = keepOnly(transitive(m, index, true).tree, inC);
        sNode.children.push({ ...filtered, edge: 'topic', topic_id: topic });
      }
    }
    return { tree: phase1.tree, canonical_space_ids: [...inC].sort() };
  }

  /** The transitive tree of `x` (§3 BFS) in mode full or explicit. */
  transitive(x: string, full: boolean): { tree: PlainNode; visited: ReadonlySet<string> } {
    return transitive(x, this.index(), full);
  }

  /** Edges by source and members by topic, rebuilt on every call: no state to get stale. */
  private index(): Index {
    const members = new Map<string, string[]>();
    for (const [s, t] of [...this.topicOf].sort()) members.set(t, [...(members.get(t) ?? []), s]);
    const explicit = new Map<string, Candidate[]>();
    const topics = new Map<string, Candidate[]>();
    const add = (map: Map<string, Candidate[]>, s: string, c: Candidate) =>
      map.set(s, [...(map.get(s) ?? []), c]);
    for (const e of this.edges) {
      const [s, target, kind] = e.split('|') as [string, string, 'verified' | 'related'];
      add(explicit, s, { target, edge: kind, topic: null });
    }
    for (const e of this.topicEdges) {
      const [s, topic] = e.split('|') as [string, string];
      for (const m of members.get(topic) ?? []) add(topics, s, { target: m, edge: 'topic', topic });
    }
    return { members, explicit, topics };
  }
}

interface Index {
  members: Map<string, string[]>;
  explicit: Map<string, Candidate[]>;
  topics: Map<string, Candidate[]>;
}

/** Children of x in mode full or explicit, in candidate order. */
function candidates(x: string, index: Index, full: boolean): Candidate[] {
  const out = [...(index.explicit.get(x) ?? []), ...(full ? (index.topics.get(x) ?? []) : [])];
  return out.sort(
    (a, b) =>
      cmp(a.target, b.target) || KIND_ORDER[a.edge] - KIND_ORDER[b.edge] || cmp(a.topic ?? '', b.topic ?? ''),
  );
}

/** BFS from x; first discovery wins. */
function transitive(x: string, index: Index, full: boolean) {
  const tree: PlainNode = { space_id: x, edge: 'root', topic_id: null, children: [] };
  const nodes = new Map([[x, tree]]);
  const visited = new Set([x]);
  const queue = [tree];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]!;
    for (const c of candidates(node.space_id, index, full)) {
      if (visited.has(c.target)) continue;
      visited.add(c.target);
      const child: PlainNode = { space_id: c.target, edge: c.edge, topic_id: c.topic, children: [] };
      node.children.push(child);
      nodes.set(c.target, child);
      queue.push(child);
    }
  }
  return { tree, nodes, visited };
}

function keepOnly(node: PlainNode, keep: ReadonlySet<string>): PlainNode {
  const children = node.children.filter((c) => keep.has(c.space_id)).map((c) => keepOnly(c, keep));
  return { ...node, children };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** An interned tree expanded into the plain shape (small trees only: tests). */
export function expand(node: TreeNode): PlainNode {
  return {
    space_id: node.space,
    edge: node.edge,
    topic_id: node.topic,
    children: node.children.map(expand),
  };
}
