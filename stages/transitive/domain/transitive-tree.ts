/**
 * The transitive tree of one space (DESIGN §3: BFS, first discovery wins), maintained
 * incrementally as candidates appear and disappear.
 *
 * BFS pops a level in queue order, and queue order within a level is the order of the nodes'
 * tree paths compared as id sequences (a parent's children are queued in target id order).
 * So a node's first discoverer is, among its candidates one level up, the one whose tree path
 * is smallest: the tree is the tree of lexicographically smallest shortest paths. That
 * characterisation is local — parent(y) = the best of y's predecessors — which is what lets an
 * update re-examine only the nodes whose path actually changed.
 */

import { type GraphStore, NO_EDGE, ROOT } from './graph-store.ts';
import { insertById, removeById, sortById } from './id-table.ts';
import { LevelQueue } from './level-queue.ts';
import { StampSet } from './stamp-set.ts';

/** What one update changed. */
export interface TreeDelta {
  /** Nodes whose tree node may differ (label, children or parent), reached or not. */
  touched: number[];
  /** Nodes reached now and not before, and the reverse. */
  entered: number[];
  left: number[];
}

export function emptyDelta(): TreeDelta {
  return { touched: [], entered: [], left: [] };
}

const NONE: readonly number[] = [];
// Scratch sets for the duration of one update; updates never nest.
const touchedMarks = new StampSet();
const doneMarks = new StampSet();
const cutMarks = new StampSet();

export class TransitiveTree {
  readonly source: number;
  /** Mode full (topic edges give candidates) or explicit. */
  readonly full: boolean;
  private readonly graph: GraphStore;
  /** Per space: BFS level (-1 when not reached), parent (-1 for none), edge label. */
  private dist = new Int32Array(0);
  private parent = new Int32Array(0);
  private label = new Int32Array(0);
  /** Tree children in id order. */
  private readonly kids: (number[] | undefined)[] = [];
  private reachedCount = 0;

  constructor(graph: GraphStore, source: number, full: boolean) {
    this.graph = graph;
    this.source = source;
    this.full = full;
    this.build();
  }

  get size(): number {
    return this.reachedCount;
  }

  reached(v: number): boolean {
    return v < this.dist.length && this.dist[v]! >= 0;
  }

  depth(v: number): number {
    return this.dist[v]!;
  }

  parentOf(v: number): number {
    return v < this.parent.length ? this.parent[v]! : -1;
  }

  labelOf(v: number): number {
    return this.label[v]!;
  }

  childrenOf(v: number): readonly number[] {
    return this.kids[v] ?? NONE;
  }

  /** Reached nodes, parents before children. */
  preorder(): number[] {
    const order: number[] = [];
    const stack = [this.source];
    for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
      order.push(v);
      for (const k of this.childrenOf(v)) stack.push(k);
    }
    return order;
  }

  /** Candidates (x, y) were added, given as flat pairs; the graph already has them. */
  insert(pairs: readonly number[], delta: TreeDelta): void {
    this.fit();
    touchedMarks.clear();
    const queue = new LevelQueue();
    for (let i = 0; i < pairs.length; i += 2) {
      const x = pairs[i]!;
      const y = pairs[i + 1]!;
      if (x === y || !this.reached(x)) continue;
      if (this.parent[y] === x) this.relabel(y, delta);
      // A new candidate is judged when its source's level comes up (see settle).
      else queue.add(this.dist[x]!, -1 - i);
    }
    this.settle(queue, pairs, delta);
  }

  /** Candidates (x, y) were removed, given as flat pairs; the graph no longer has them. */
  remove(pairs: readonly number[], delta: TreeDelta): void {
    this.fit();
    touchedMarks.clear();
    const orphans: number[] = [];
    for (let i = 0; i < pairs.length; i += 2) {
      const x = pairs[i]!;
      const y = pairs[i + 1]!;
      if (x === y || !this.reached(x) || this.parent[y] !== x) continue;
      if (this.graph.firstLabel(x, y, this.full) === NO_EDGE) orphans.push(y);
      else this.relabel(y, delta);
    }
    if (orphans.length > 0) this.regrow(this.cut(orphans), delta);
  }

  private build(): void {
    this.fit();
    const { dist, parent, label, graph, full } = this;
    const ids = graph.spaces.ids;
    dist[this.source] = 0;
    label[this.source] = ROOT;
    this.reachedCount = 1;
    const found: number[] = [];
    const fresh: number[] = [];
    // Plain BFS: levels in queue order, so the first discovery is the right one.
    for (let level = [this.source]; level.length > 0; ) {
      const next: number[] = [];
      for (const x of level) {
        found.length = 0;
        fresh.length = 0;
        graph.targets(x, full, found);
        for (const y of found) {
          if (dist[y]! >= 0) continue;
          dist[y] = dist[x]! + 1;
          parent[y] = x;
          label[y] = graph.firstLabel(x, y, full);
          fresh.push(y);
        }
        if (fresh.length === 0) continue;
        // A copy: exactly sized, the scratch array is reused.
        const kids = sortById(fresh.slice(), ids);
        this.kids[x] = kids;
        for (const y of kids) next.push(y);
        this.reachedCount += kids.length;
      }
      level = next;
    }
  }

  /**
   * Works through the queue lowest level first. A queued node's path got smaller, so each of
   * its targets may now prefer it, and its tree children's paths got smaller with it; a queued
   * pair (negative: -1 - index into `pairs`) is a new candidate. When level L is worked on,
   * every path up to level L is final and every level up to L + 1 consistent, which makes each
   * comparison exact.
   */
  private settle(queue: LevelQueue, pairs: readonly number[], delta: TreeDelta): void {
    doneMarks.clear();
    const found: number[] = [];
    for (let batch = queue.take(); batch; batch = queue.take()) {
      const [level, entries] = batch;
      for (const entry of entries) {
        if (entry < 0) {
          this.offer(pairs[-1 - entry]!, pairs[-entry]!, level, queue, delta);
          continue;
        }
        if (this.dist[entry] !== level || !doneMarks.add(entry)) continue;
        found.length = 0;
        this.graph.targets(entry, this.full, found);
        for (const z of found) {
          if (this.parent[z] === entry) {
            this.dist[z] = level + 1;
            queue.add(level + 1, z);
          } else this.offer(entry, z, level, queue, delta);
        }
      }
    }
  }

  /** x, on `level`, offers itself as z's parent. */
  private offer(x: number, z: number, level: number, queue: LevelQueue, delta: TreeDelta): void {
    // A source that moved meanwhile re-offers all its targets from its new level.
    if (this.dist[x] !== level || !this.better(x, z)) return;
    this.move(z, x, delta);
    queue.add(level + 1, z);
  }

  /** The subtrees below the orphans, detached: they are exactly the nodes whose path is gone. */
  private cut(orphans: readonly number[]): number[] {
    cutMarks.clear();
    const nodes: number[] = [];
    const stack = orphans.filter((y) => cutMarks.add(y));
    for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
      nodes.push(v);
      for (const k of this.childrenOf(v)) if (cutMarks.add(k)) stack.push(k);
    }
    return nodes;
  }

  /**
   * Finds new paths for cut nodes: first from predecessors outside the cut (their paths did not
   * change), then level by level through cut nodes already placed. Nothing outside the cut can
   * prefer a cut node: its path only got longer or bigger.
   */
  private regrow(nodes: readonly number[], delta: TreeDelta): void {
    const { dist, parent } = this;
    const oldParent = Int32Array.from(nodes, (v) => parent[v]!);
    for (const v of nodes) {
      const p = parent[v]!;
      if (!cutMarks.has(p)) this.kids[p] = removeById(this.kids[p]!, v, this.graph.spaces.ids);
      this.kids[v] = undefined;
      dist[v] = -1;
      parent[v] = -1;
    }
    const queue = new LevelQueue();
    const found: number[] = [];
    for (const v of nodes) {
      found.length = 0;
      this.graph.sources(v, this.full, found);
      for (const p of found) {
        if (dist[p]! < 0 || cutMarks.has(p) || !this.better(p, v)) continue;
        parent[v] = p;
        dist[v] = dist[p]! + 1;
      }
      if (dist[v]! >= 0) queue.add(dist[v]!, v);
    }
    this.place(queue);
    for (let i = 0; i < nodes.length; i++) this.settleCut(nodes[i]!, oldParent[i]!, delta);
  }

  private place(queue: LevelQueue): void {
    doneMarks.clear();
    const found: number[] = [];
    for (let batch = queue.take(); batch; batch = queue.take()) {
      const [level, nodes] = batch;
      for (const v of nodes) {
        if (this.dist[v] !== level || !doneMarks.add(v)) continue;
        const p = this.parent[v]!;
        this.label[v] = this.graph.firstLabel(p, v, this.full);
        this.kids[p] = insertById(this.kids[p], v, this.graph.spaces.ids);
        found.length = 0;
        this.graph.targets(v, this.full, found);
        for (const z of found) {
          if (!cutMarks.has(z) || doneMarks.has(z) || !this.better(v, z)) continue;
          this.parent[z] = v;
          this.dist[z] = level + 1;
          queue.add(level + 1, z);
        }
      }
    }
  }

  /** Same parent means same label: the candidates between them did not change. */
  private settleCut(v: number, oldParent: number, delta: TreeDelta): void {
    if (!doneMarks.has(v)) {
      this.dist[v] = -1;
      this.parent[v] = -1;
      this.label[v] = NO_EDGE;
      this.reachedCount--;
      delta.left.push(v);
    }
    const p = this.parent[v]!;
    if (p === oldParent) return;
    this.touch(v, delta);
    if (this.reached(oldParent)) this.touch(oldParent, delta);
    if (p >= 0) this.touch(p, delta);
  }

  /** Is x (reached, path final) a better parent for y than y's current one? */
  private better(x: number, y: number): boolean {
    const dy = this.dist[y]!;
    if (dy < 0) return true;
    const dx = this.dist[x]! + 1;
    if (dx !== dy) return dx < dy;
    const p = this.parent[y]!;
    return p !== x && this.precedes(x, p);
  }

  /** Does a's path sort before b's? Both on the same level, a ≠ b. */
  private precedes(a: number, b: number): boolean {
    const parent = this.parent;
    while (parent[a] !== parent[b]) {
      a = parent[a]!;
      b = parent[b]!;
    }
    const ids = this.graph.spaces.ids;
    return ids[a]! < ids[b]!;
  }

  private move(y: number, x: number, delta: TreeDelta): void {
    const old = this.parent[y]!;
    const ids = this.graph.spaces.ids;
    if (old >= 0) {
      this.kids[old] = removeById(this.kids[old]!, y, ids);
      this.touch(old, delta);
    } else {
      this.reachedCount++;
      delta.entered.push(y);
    }
    this.parent[y] = x;
    this.dist[y] = this.dist[x]! + 1;
    this.label[y] = this.graph.firstLabel(x, y, this.full);
    this.kids[x] = insertById(this.kids[x], y, ids);
    this.touch(x, delta);
    this.touch(y, delta);
  }

  private relabel(y: number, delta: TreeDelta): void {
    const next = this.graph.firstLabel(this.parent[y]!, y, this.full);
    if (next === this.label[y]) return;
    this.label[y] = next;
    this.touch(y, delta);
  }

  private touch(v: number, delta: TreeDelta): void {
    if (touchedMarks.add(v)) delta.touched.push(v);
  }

  /** Grows the per-space arrays to the number of known spaces. */
  private fit(): void {
    const n = this.graph.spaces.size;
    if (n <= this.dist.length) return;
    const size = Math.max(n, this.dist.length * 2, 16);
    this.dist = grown(this.dist, size);
    this.parent = grown(this.parent, size);
    this.label = grown(this.label, size);
  }
}

function grown(a: Int32Array, size: number): Int32Array<ArrayBuffer> {
  const next = new Int32Array(size).fill(-1);
  next.set(a);
  return next;
}
