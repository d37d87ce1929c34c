/**
 * Phase 2's subtree for one member m within one root's canonical set C: m's full transitive
 * tree keeping only children in C (a child outside C goes with its whole subtree), root
 * relabelled as a topic edge. Kept nodes are interned bottom-up and rebuilt only where the full
 * tree or C changed, plus their ancestors.
 */
import type { TreeInterner, TreeNode } from '../../topology/tree.ts';
import { edgeOf, type GraphStore, TOPIC } from './graph-store.ts';
import { deepestFirst, LevelQueue } from './level-queue.ts';
import { StampSet } from './stamp-set.ts';
import type { TransitiveTree } from './transitive-tree.ts';

const dirtyMarks = new StampSet();

export interface TreeContext {
  graph: GraphStore;
  interner: TreeInterner;
}

export class FilteredTree {
  readonly member: number;
  /** m's full transitive tree (shared between roots). */
  readonly full: TransitiveTree;
  /** The root's explicit transitive tree: its reached set is C. */
  private readonly scope: TransitiveTree;
  private readonly ctx: TreeContext;
  /** Kept nodes (only they: memory follows what m reaches in C), with their interned node once built. */
  private readonly kept = new Map<number, TreeNode | null>();
  /** Nodes whose kept status or tree node may have changed since the last refresh. */
  private seeds: number[] = [];
  private built = false;
  /** m's subtree relabelled as a topic edge: what phase 2 attaches. */
  private top: TreeNode | undefined;

  constructor(member: number, full: TransitiveTree, scope: TransitiveTree, ctx: TreeContext) {
    this.member = member;
    this.full = full;
    this.scope = scope;
    this.ctx = ctx;
  }

  get attachment(): TreeNode {
    return this.top!;
  }

  get size(): number {
    return this.kept.size;
  }

  /** Nodes changed in the full tree; true when any of them can matter here. */
  noteFullChange(touched: readonly number[]): boolean {
    const before = this.seeds.length;
    for (const v of touched) if (this.scope.reached(v) || this.kept.has(v)) this.seeds.push(v);
    return this.noted(before);
  }

  /** Nodes that entered or left C; true when any of them can matter here. */
  noteScopeChange(nodes: readonly number[]): boolean {
    const before = this.seeds.length;
    for (const v of nodes) if (this.full.reached(v) || this.kept.has(v)) this.seeds.push(v);
    return this.noted(before);
  }

  /** Seeds pile up until the next refresh; past the tree's size, rebuilding it all is cheaper. */
  private noted(before: number): boolean {
    if (this.seeds.length > this.full.size) {
      this.seeds = [];
      this.built = false;
    }
    return this.seeds.length > before || !this.built;
  }

  /** Brings the interned nodes up to date; true when the attachment changed. */
  refresh(): boolean {
    const before = this.top;
    if (!this.built) this.buildAll();
    else if (this.seeds.length > 0) this.rebuild(this.updateKept());
    this.seeds = [];
    this.built = true;
    return this.top !== before;
  }

  private buildAll(): void {
    this.kept.clear();
    const order: number[] = [];
    const stack = [this.member];
    for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
      this.setKept(v, true);
      order.push(v);
      for (const k of this.full.childrenOf(v)) if (this.scope.reached(k)) stack.push(k);
    }
    for (let i = order.length - 1; i >= 0; i--) this.build(order[i]!);
  }

  /**
   * Recomputes kept status from the seeds down, parents before children (a node is kept when
   * it is m, or in C below a kept parent). Returns the kept nodes whose tree node must be
   * rebuilt.
   */
  private updateKept(): number[] {
    dirtyMarks.clear();
    const dirty: number[] = [];
    const mark = (v: number) => {
      if (this.kept.has(v) && dirtyMarks.add(v)) dirty.push(v);
    };
    const queue = new LevelQueue();
    for (const v of this.seeds) queue.add(this.full.reached(v) ? this.full.depth(v) : -1, v);
    for (let batch = queue.take(); batch; batch = queue.take()) {
      const [level, nodes] = batch;
      for (const v of nodes) {
        const want = this.wanted(v);
        if (want !== this.kept.has(v)) {
          this.setKept(v, want);
          // Its parent's kept children changed; an unreached node's old parent is a seed.
          if (level >= 0) mark(this.full.parentOf(v));
          for (const k of this.full.childrenOf(v)) queue.add(level + 1, k);
        }
        mark(v);
      }
    }
    return dirty;
  }

  private wanted(v: number): boolean {
    if (v === this.member) return true;
    if (!this.full.reached(v) || !this.scope.reached(v)) return false;
    return this.kept.has(this.full.parentOf(v));
  }

  private rebuild(dirty: number[]): void {
    for (let i = 0, n = dirty.length; i < n; i++) {
      for (let p = this.full.parentOf(dirty[i]!); p >= 0 && dirtyMarks.add(p); p = this.full.parentOf(p)) {
        dirty.push(p);
      }
    }
    for (const v of deepestFirst(dirty, (v) => this.full.depth(v))) this.build(v);
  }

  private build(v: number): void {
    const { graph, interner } = this.ctx;
    const children: TreeNode[] = [];
    for (const k of this.full.childrenOf(v)) if (this.kept.has(k)) children.push(this.kept.get(k)!);
    const id = graph.spaces.id(v);
    if (v === this.member) {
      const topic = graph.topics.id(graph.topicOf(v));
      this.top = interner.node(id, 'topic', topic, children);
      this.kept.set(v, this.top);
      return;
    }
    const label = this.full.labelOf(v);
    const topic = label >= TOPIC ? graph.topics.id(label - TOPIC) : null;
    this.kept.set(v, interner.node(id, edgeOf(label), topic, children));
  }

  private setKept(v: number, keep: boolean): void {
    if (keep) this.kept.set(v, null);
    else this.kept.delete(v);
  }
}
