/**
 * The transitive stage's domain: the topology state and, per configured root, its canonical
 * graph (DESIGN §3), kept up to date incrementally.
 *
 * Each root keeps its explicit transitive tree; each member that phase 2 attaches anywhere
 * keeps one full transitive tree shared by all roots. An event becomes candidate pairs that
 * appeared or disappeared; each tree re-examines only the nodes whose BFS path changed and
 * reports the nodes whose tree node changed. Those, plus their ancestors, are all that is
 * re-interned when a canonical graph is asked for.
 */
import type { TopologyEvent } from '../../topology/events.ts';
import { TreeInterner } from '../../topology/tree.ts';
import { type Canonical, CanonicalTree, type FullTrees } from './canonical-tree.ts';
import { applyEvent, type GraphChange } from './graph-change.ts';
import { type GraphState, GraphStore } from './graph-store.ts';
import { emptyDelta, TransitiveTree } from './transitive-tree.ts';

export type { GraphState } from './graph-store.ts';

export interface ApplyResult {
  outcome: 'applied' | 'noop' | 'conflict';
  /** Roots whose canonical graph may have changed (never misses one that did). */
  rootsToRecompute: string[];
}

/**
 * Interner generation size: the live node count, so the table (two generations) holds at most
 * about twice the live nodes; dead nodes it still holds are what costs memory.
 */
const MIN_GENERATION = 50_000;

export class TopologyGraph {
  private readonly graph = new GraphStore();
  private readonly interner = new TreeInterner();
  private readonly fullTrees = new SharedFullTrees(this.graph);
  private readonly roots = new Map<string, CanonicalTree>();

  constructor(roots: string[], state?: GraphState) {
    if (state) this.graph.load(state);
    const ctx = { graph: this.graph, interner: this.interner };
    for (const id of roots) {
      if (!this.roots.has(id))
        this.roots.set(id, new CanonicalTree(this.graph.space(id), ctx, this.fullTrees));
    }
  }

  static fromState(roots: string[], s: GraphState): TopologyGraph {
    return new TopologyGraph(roots, s);
  }

  /**
   * Applies one event. conflict = space.created for an existing space with a different topic
   * (state unchanged). noop = nothing changed.
   */
  apply(event: TopologyEvent): ApplyResult {
    const change = applyEvent(this.graph, event);
    if (change === 'noop' || change === 'conflict') return { outcome: change, rootsToRecompute: [] };
    for (const root of this.roots.values()) {
      root.changed = false;
      applyToRoot(root, change);
    }
    this.updateFullTrees(change);
    const due: string[] = [];
    for (const [id, root] of this.roots) {
      root.reconcile();
      if (root.changed) due.push(id);
    }
    return { outcome: 'applied', rootsToRecompute: due };
  }

  /** Canonical graph of a configured root; the id array is shared and must not be mutated. */
  canonical(root: string): Canonical {
    const tree = this.roots.get(root);
    if (!tree) throw new Error(`${root} is not a configured root`);
    const result = tree.canonical();
    this.sizeGenerations();
    return result;
  }

  state(): GraphState {
    return this.graph.snapshot();
  }

  /** Tree nodes built so far (a measure of work, for metrics and benchmarks). */
  get nodesBuilt(): number {
    return this.interner.created;
  }

  private updateFullTrees(change: GraphChange): void {
    if (change.full.length === 0) return;
    for (const [member, tree] of this.fullTrees.all()) {
      const delta = emptyDelta();
      if (change.insert) tree.insert(change.full, delta);
      else tree.remove(change.full, delta);
      if (delta.touched.length === 0) continue;
      for (const root of this.roots.values()) root.noteFullChange(member, delta.touched);
    }
  }

  private sizeGenerations(): void {
    let live = 0;
    for (const root of this.roots.values()) live += root.liveSize;
    this.interner.generationSize = Math.max(MIN_GENERATION, Math.ceil(live / 4));
  }
}

function applyToRoot(root: CanonicalTree, change: GraphChange): void {
  if (change.explicit.length > 0) root.applyExplicit(change.insert, change.explicit);
  if (change.topicEdge)
    root.applyTopicEdge(change.topicEdge.source, change.topicEdge.topic, change.insert ? 1 : -1);
  if (change.member) root.applyMember(change.member.space, change.member.topic);
}

/** One full transitive tree per attached member, shared by the roots that attach it. */
class SharedFullTrees implements FullTrees {
  private readonly graph: GraphStore;
  private readonly trees = new Map<number, { tree: TransitiveTree; users: number }>();

  constructor(graph: GraphStore) {
    this.graph = graph;
  }

  acquire(member: number): TransitiveTree {
    let entry = this.trees.get(member);
    if (!entry) {
      entry = { tree: new TransitiveTree(this.graph, member, true), users: 0 };
      this.trees.set(member, entry);
    }
    entry.users++;
    return entry.tree;
  }

  release(member: number): void {
    const entry = this.trees.get(member);
    if (entry && --entry.users === 0) this.trees.delete(member);
  }

  *all(): Iterable<[number, TransitiveTree]> {
    for (const [member, entry] of this.trees) yield [member, entry.tree];
  }
}
