/**
 * The canonical graph of one root (DESIGN §3): phase 1's explicit transitive tree T with its
 * flat set C, and under each node s of T the phase-2 attachments — for each topic edge
 * (s, τ), each member m of τ in C other than s, m's filtered full tree.
 *
 * Kept as T's own tree, where each attachment is a reference to the member, plus the table of
 * attached subtrees by member (GraphTrees): a change inside one attached subtree costs that
 * subtree's change and one table entry, not every anchor of its topic and their ancestors. Nodes
 * are interned bottom-up and rebuilt only where something changed, plus their ancestors.
 */
import { compareIds } from '../../topology/ids.ts';
import {
  AttachedDigest,
  expandGraph,
  type GraphTrees,
  graphHash,
  type TreeNode,
} from '../../topology/tree.ts';
import { FilteredTree, type TreeContext } from './filtered-tree.ts';
import { edgeOf } from './graph-store.ts';
import { deepestFirst } from './level-queue.ts';
import { StampSet } from './stamp-set.ts';
import { emptyDelta, TransitiveTree } from './transitive-tree.ts';

/** Shared full transitive trees, one per member some root attaches. */
export interface FullTrees {
  acquire(member: number): TransitiveTree;
  release(member: number): void;
}

export interface Canonical {
  /** The graph as own tree + attached subtrees: what the stages carry. */
  graph: GraphTrees;
  /** The expanded tree, built on first read (it costs the own nodes above every reference). */
  readonly tree: TreeNode;
  canonical_space_ids: string[];
}

const ancestorMarks = new StampSet();
/** Above this many changed ids, merging beats splicing into a copy. */
const SPLICE_LIMIT = 64;

export class CanonicalTree {
  readonly root: number;
  /** Phase 1: the root's explicit transitive tree; its reached set is C. */
  readonly scope: TransitiveTree;
  /** Whether the current event may have changed this graph. */
  changed = false;
  private readonly ctx: TreeContext;
  private readonly fullTrees: FullTrees;
  /** Interned node per node of T (only those: memory follows C, not the number of spaces). */
  private readonly nodes = new Map<number, TreeNode>();
  private readonly dirty = new Set<number>();
  /** Members attached somewhere in T, with their filtered trees. */
  private readonly attached = new Map<number, FilteredTree>();
  /** Per topic: how many spaces of C have a topic edge to it. */
  private readonly sourcesInScope = new Map<number, number>();
  /** Topics whose members' attachment may have changed. */
  private readonly topicsToCheck = new Set<number>();
  private ids: string[] = [];
  private readonly enteredSince = new Set<number>();
  private readonly leftSince = new Set<number>();
  /** Attached subtree hash per member, as `digest` covers them. */
  private readonly digested = new Map<number, TreeNode>();
  private readonly digest = new AttachedDigest();
  /** Whether an attachment came, went or changed since the last graph. */
  private attachedChanged = false;
  private graph: GraphTrees | undefined;
  /**
   * Expanded node per node of T (attachments in place), kept up to date only once someone read
   * an expanded tree, with the nodes it must rebuild: the old representation, as a lazy view.
   */
  private readonly fullNodes = new Map<number, TreeNode>();
  private readonly fullDirty = new Set<number>();
  private fullLive = false;
  /** Counts changes, so an expanded tree read late is built from its own graph, not a newer state. */
  private epoch = 0;

  constructor(root: number, ctx: TreeContext, fullTrees: FullTrees) {
    this.root = root;
    this.ctx = ctx;
    this.fullTrees = fullTrees;
    this.scope = new TransitiveTree(ctx.graph, root, false);
    for (const v of this.scope.preorder()) this.enter(v);
    this.reconcile();
  }

  /** Explicit candidates (flat source, target pairs) were added or removed. */
  applyExplicit(insert: boolean, pairs: readonly number[]): void {
    this.epoch++;
    const delta = emptyDelta();
    if (insert) this.scope.insert(pairs, delta);
    else this.scope.remove(pairs, delta);
    for (const v of delta.touched) if (this.scope.reached(v)) this.markDirty(v);
    for (const v of delta.entered) this.enter(v);
    for (const v of delta.left) this.leave(v);
    for (const view of this.attached.values()) {
      const entered = view.noteScopeChange(delta.entered);
      if (view.noteScopeChange(delta.left) || entered) this.changed = true;
    }
  }

  /** The topic edge (source, topic) was added (+1) or removed (-1). */
  applyTopicEdge(source: number, topic: number, step: 1 | -1): void {
    this.epoch++;
    if (!this.scope.reached(source)) return;
    this.count(topic, step);
    const members = this.ctx.graph.membersOf(topic);
    if (members.some((m) => m !== source && this.scope.reached(m))) this.markDirty(source);
  }

  /** `space` was created, announcing `topic`. */
  applyMember(space: number, topic: number): void {
    this.epoch++;
    if (!this.scope.reached(space)) return;
    this.topicsToCheck.add(topic);
    this.markSources(topic, space);
  }

  /** Nodes changed in a member's full tree. */
  noteFullChange(member: number, touched: readonly number[]): void {
    this.epoch++;
    if (this.attached.get(member)?.noteFullChange(touched)) this.changed = true;
  }

  /** Attaches and detaches members after an event, so phase 2 finds every filtered tree it needs. */
  reconcile(): void {
    this.epoch++;
    for (const topic of this.topicsToCheck) {
      for (const m of this.ctx.graph.membersOf(topic)) {
        const view = this.attached.get(m);
        const wanted = this.attaches(m);
        if (wanted && !view) {
          this.attached.set(m, new FilteredTree(m, this.fullTrees.acquire(m), this.scope, this.ctx));
          this.markSources(topic, m);
        } else if (!wanted && view) {
          this.attached.delete(m);
          this.fullTrees.release(m);
          this.undigest(m);
        }
      }
    }
    this.topicsToCheck.clear();
  }

  canonical(): Canonical {
    const self = this;
    for (const view of this.attached.values()) {
      view.refresh();
      if (this.digested.get(view.member) !== view.attachment) this.redigest(view.member, view.attachment);
    }
    if (this.dirty.size > 0) this.rebuild();
    if (this.enteredSince.size + this.leftSince.size > 0) this.updateIds();
    const own = this.nodes.get(this.root)!;
    if (this.attachedChanged || own !== this.graph?.own) this.graph = this.makeGraph(own);
    this.attachedChanged = false;
    const graph = this.graph;
    const epoch = ++this.epoch;
    let tree: TreeNode | undefined;
    return {
      graph,
      get tree() {
        tree ??= self.epoch === epoch ? self.expand() : expandGraph(graph, self.ctx.interner);
        return tree;
      },
      canonical_space_ids: this.ids,
    };
  }

  /**
   * The expanded tree: the anchors whose attachment or own node changed and their ancestors are
   * re-interned, what the old representation cost for every event.
   */
  private expand(): TreeNode {
    if (!this.fullLive) {
      this.fullLive = true;
      for (const v of this.scope.preorder()) this.fullDirty.add(v);
    }
    if (this.fullDirty.size > 0) {
      ancestorMarks.clear();
      const nodes: number[] = [];
      for (const v of this.fullDirty) {
        for (let p = v; p >= 0 && ancestorMarks.add(p); p = this.scope.parentOf(p)) nodes.push(p);
      }
      this.fullDirty.clear();
      for (const v of deepestFirst(nodes, (v) => this.scope.depth(v))) this.buildFull(v);
    }
    return this.fullNodes.get(this.root)!;
  }

  private buildFull(v: number): void {
    const { graph, interner } = this.ctx;
    const children: TreeNode[] = [];
    for (const k of this.scope.childrenOf(v)) children.push(this.fullNodes.get(k)!);
    for (const topic of graph.topicsOf(v)) {
      for (const m of graph.membersOf(topic)) {
        if (m !== v && this.scope.reached(m)) children.push(this.digested.get(m)!);
      }
    }
    this.fullNodes.set(v, interner.node(graph.spaces.id(v), edgeOf(this.scope.labelOf(v)), null, children));
  }

  private redigest(member: number, subtree: TreeNode): void {
    this.undigest(member);
    this.digest.add(this.ctx.graph.spaces.id(member), subtree.hash);
    this.digested.set(member, subtree);
    this.attachedChanged = true;
    this.markFullAnchors(member);
  }

  private undigest(member: number): void {
    const old = this.digested.get(member);
    if (!old) return;
    this.digest.remove(this.ctx.graph.spaces.id(member), old.hash);
    this.digested.delete(member);
    this.attachedChanged = true;
    this.markFullAnchors(member);
  }

  /** The expanded nodes holding `member`'s attached subtree must be rebuilt. */
  private markFullAnchors(member: number): void {
    if (!this.fullLive) return;
    const { graph } = this.ctx;
    const sources = graph.sourcesOf(graph.topicOf(member));
    if (sources) for (const s of sources) if (s !== member && this.scope.reached(s)) this.fullDirty.add(s);
  }

  /**
   * A fresh table whenever it changed, since callers may hold the old graph. Each attached
   * subtree appears once per anchor referring to it: the topic's sources in C but the member.
   */
  private makeGraph(own: TreeNode): GraphTrees {
    const { graph } = this.ctx;
    // The same table while no attachment changed, so an expansion can build on the last one.
    const attached = this.attachedChanged || !this.graph ? this.attachedTable() : this.graph.attached;
    let size = own.size;
    for (const [member, subtree] of this.digested) {
      const topic = graph.topicOf(member);
      const anchors = (this.sourcesInScope.get(topic) ?? 0) - (graph.hasTopicEdge(member, topic) ? 1 : 0);
      size += anchors * (subtree.size - 1);
    }
    return { own, attached, hash: graphHash(own.hash, this.digest.value), size };
  }

  private attachedTable(): Map<string, TreeNode> {
    const table = new Map<string, TreeNode>();
    for (const [member, subtree] of this.digested) table.set(this.ctx.graph.spaces.id(member), subtree);
    return table;
  }

  /** Roughly how many interned nodes this graph keeps alive. */
  get liveSize(): number {
    let size = this.fullLive ? 2 * this.scope.size : this.scope.size;
    for (const view of this.attached.values()) size += view.size;
    return size;
  }

  private attaches(m: number): boolean {
    const { graph } = this.ctx;
    const topic = graph.topicOf(m);
    if (topic === -1 || !this.scope.reached(m)) return false;
    const own = graph.hasTopicEdge(m, topic) ? 1 : 0;
    return (this.sourcesInScope.get(topic) ?? 0) - own > 0;
  }

  private enter(v: number): void {
    this.markDirty(v);
    if (!this.leftSince.delete(v)) this.enteredSince.add(v);
    this.moveInScope(v, 1);
  }

  private leave(v: number): void {
    this.nodes.delete(v);
    this.dirty.delete(v);
    this.fullNodes.delete(v);
    this.fullDirty.delete(v);
    this.changed = true;
    if (!this.enteredSince.delete(v)) this.leftSince.add(v);
    this.moveInScope(v, -1);
  }

  private moveInScope(v: number, step: 1 | -1): void {
    const { graph } = this.ctx;
    for (const topic of graph.topicsOf(v)) this.count(topic, step);
    const own = graph.topicOf(v);
    if (own === -1) return;
    this.topicsToCheck.add(own);
    this.markSources(own, v);
  }

  private count(topic: number, step: 1 | -1): void {
    const n = (this.sourcesInScope.get(topic) ?? 0) + step;
    if (n === 0) this.sourcesInScope.delete(topic);
    else this.sourcesInScope.set(topic, n);
    this.topicsToCheck.add(topic);
  }

  /** The nodes of C with a topic edge to `topic`, but `member`: what `member` attaches under changed. */
  private markSources(topic: number, member: number): void {
    const sources = this.ctx.graph.sourcesOf(topic);
    if (sources) for (const s of sources) if (s !== member && this.scope.reached(s)) this.markDirty(s);
  }

  private markDirty(v: number): void {
    this.dirty.add(v);
    if (this.fullLive) this.fullDirty.add(v);
    this.changed = true;
  }

  private rebuild(): void {
    ancestorMarks.clear();
    const nodes: number[] = [];
    for (const v of this.dirty) {
      for (let p = v; p >= 0 && ancestorMarks.add(p); p = this.scope.parentOf(p)) nodes.push(p);
    }
    this.dirty.clear();
    for (const v of deepestFirst(nodes, (v) => this.scope.depth(v))) this.build(v);
  }

  private build(v: number): void {
    const { graph, interner } = this.ctx;
    const children: TreeNode[] = [];
    for (const k of this.scope.childrenOf(v)) children.push(this.nodes.get(k)!);
    for (const topic of graph.topicsOf(v)) {
      for (const m of graph.membersOf(topic)) {
        if (m !== v && this.scope.reached(m))
          children.push(interner.ref(graph.spaces.id(m), graph.topics.id(topic)));
      }
    }
    this.nodes.set(v, interner.node(graph.spaces.id(v), edgeOf(this.scope.labelOf(v)), null, children));
  }

  /** C in id order; a fresh array whenever C changed, since callers may hold the old one. */
  private updateIds(): void {
    const spaces = this.ctx.graph.spaces;
    const added = [...this.enteredSince].map((v) => spaces.id(v)).sort(compareIds);
    const gone = new Set([...this.leftSince].map((v) => spaces.id(v)));
    this.ids =
      added.length + gone.size <= SPLICE_LIMIT ? splice(this.ids, added, gone) : merge(this.ids, added, gone);
    this.enteredSince.clear();
    this.leftSince.clear();
  }
}

function splice(ids: readonly string[], added: readonly string[], gone: ReadonlySet<string>): string[] {
  const out = ids.slice();
  for (const id of gone) out.splice(position(out, id), 1);
  for (const id of added) out.splice(position(out, id), 0, id);
  return out;
}

function merge(ids: readonly string[], added: readonly string[], gone: ReadonlySet<string>): string[] {
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

function position(ids: readonly string[], id: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
