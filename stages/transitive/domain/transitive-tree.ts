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
  /**
   * State of the nodes this tree reaches only, so its memory follows its reach, not the number
   * of spaces: a slot per reached node (and per node being regrown), freed when it leaves.
   */
  private readonly slots = new Map<number, number>();
  private readonly freeSlots: number[] = [];
  /** Per slot: BFS level (-1 while being regrown), parent (-1 for none), edge label. */
  private dist = new Int32Array(16);
  private parent = new Int32Array(16);
  private label = new Int32Array(16);
  /** Per slot: tree children in id order. */
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

  /** Nodes this tree holds state for: the reached ones, outside an update. */
  get held(): number {
    return this.slots.size;
  }

  reached(v: number): boolean {
    return this.depth(v) >= 0;
  }

  /** BFS level, -1 when not reached. */
  depth(v: number): number {
    const s = this.slots.get(v);
    return s === undefined ? -1 : this.dist[s]!;
  }

  parentOf(v: number): number {
    const s = this.slots.get(v);
    return s === undefined ? -1 : this.parent[s]!;
  }

  labelOf(v: number): number {
    const s = this.slots.get(v);
    return s === undefined ? NO_EDGE : this.label[s]!;
  }

  childrenOf(v: number): readonly number[] {
    const s = this.slots.get(v);
    return (s === undefined ? undefined : this.kids[s]) ?? NONE;
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
    touchedMarks.clear();
    const queue = new LevelQueue();
    for (let i = 0; i < pairs.length; i += 2) {
      const x = pairs[i]!;
      const y = pairs[i + 1]!;
      if (x === y || !this.reached(x)) continue;
      if (this.parentOf(y) === x) this.relabel(y, delta);
      // A new candidate is judged when its source's level comes up (see settle).
      else queue.add(this.depth(x), -1 - i);
    }
    this.settle(queue, pairs, delta);
  }

  /** Candidates (x, y) were removed, given as flat pairs; the graph no longer has them. */
  remove(pairs: readonly number[], delta: TreeDelta): void {
    touchedMarks.clear();
    const orphans: number[] = [];
    for (let i = 0; i < pairs.length; i += 2) {
      const x = pairs[i]!;
      const y = pairs[i + 1]!;
      if (x === y || !this.reached(x) || this.parentOf(y) !== x) continue;
      if (this.graph.firstLabel(x, y, this.full) === NO_EDGE) orphans.push(y);
      else this.relabel(y, delta);
    }
    if (orphans.length > 0) this.regrow(this.cut(orphans), delta);
  }

  private build(): void {
    const { graph, full } = this;
    const ids = graph.spaces.ids;
    this.place1(this.source, -1, 0, ROOT);
    this.reachedCount = 1;
    const found: number[] = [];
    const fresh: number[] = [];
    // Plain BFS: levels in queue order, so the first discovery is the right one.
    for (let level = [this.source], d = 1; level.length > 0; d++) {
      const next: number[] = [];
      for (const x of level) {
        found.length = 0;
        fresh.length = 0;
        graph.targets(x, full, found);
        for (const y of found) {
          if (this.slots.has(y)) continue;
          this.place1(y, x, d, graph.firstLabel(x, y, full));
          fresh.push(y);
        }
        if (fresh.length === 0) continue;
        // A copy: exactly sized, the scratch array is reused.
        const kids = sortById(fresh.slice(), ids);
        this.kids[this.slots.get(x)!] = kids;
        for (const y of kids) next.push(y);
        this.reachedCount += kids.length;
      }
      level = next;
    }
  }

  /** Gives `v` a slot with these values. */
  private place1(v: number, parent: number, dist: number, label: number): void {
    const s = this.claim(v);
    this.parent[s] = parent;
    this.dist[s] = dist;
    this.label[s] = label;
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
        if (this.depth(entry) !== level || !doneMarks.add(entry)) continue;
        found.length = 0;
        this.graph.targets(entry, this.full, found);
        for (const z of found) {
          if (this.parentOf(z) === entry) {
            this.dist[this.slots.get(z)!] = level + 1;
            queue.add(level + 1, z);
          } else this.offer(entry, z, level, queue, delta);
        }
      }
    }
  }

  /** x, on `level`, offers itself as z's parent. */
  private offer(x: number, z: number, level: number, queue: LevelQueue, delta: TreeDelta): void {
    // A source that moved meanwhile re-offers all its targets from its new level.
    if (this.depth(x) !== level || !this.better(x, z)) return;
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
   * prefer a cut node: its path only got longer or bigger. Cut nodes keep their slots until
   * settled, with level -1 meanwhile.
   */
  private regrow(nodes: readonly number[], delta: TreeDelta): void {
    const { dist, parent, slots } = this;
    const oldParent = Int32Array.from(nodes, (v) => this.parentOf(v));
    for (const v of nodes) {
      const s = slots.get(v)!;
      const p = parent[s]!;
      if (!cutMarks.has(p)) {
        const ps = slots.get(p)!;
        this.kids[ps] = removeById(this.kids[ps]!, v, this.graph.spaces.ids);
      }
      this.kids[s] = undefined;
      dist[s] = -1;
      parent[s] = -1;
    }
    const queue = new LevelQueue();
    const found: number[] = [];
    for (const v of nodes) {
      found.length = 0;
      this.graph.sources(v, this.full, found);
      const s = slots.get(v)!;
      for (const p of found) {
        if (this.depth(p) < 0 || cutMarks.has(p) || !this.better(p, v)) continue;
        parent[s] = p;
        dist[s] = this.depth(p) + 1;
      }
      if (dist[s]! >= 0) queue.add(dist[s]!, v);
    }
    this.place(queue);
    for (let i = 0; i < nodes.length; i++) this.settleCut(nodes[i]!, oldParent[i]!, delta);
  }

  private place(queue: LevelQueue): void {
    doneMarks.clear();
    const found: number[] = [];
    const ids = this.graph.spaces.ids;
    for (let batch = queue.take(); batch; batch = queue.take()) {
      const [level, nodes] = batch;
      for (const v of nodes) {
        if (this.depth(v) !== level || !doneMarks.add(v)) continue;
        const s = this.slots.get(v)!;
        const p = this.parent[s]!;
        this.label[s] = this.graph.firstLabel(p, v, this.full);
        const ps = this.slots.get(p)!;
        this.kids[ps] = insertById(this.kids[ps], v, ids);
        found.length = 0;
        this.graph.targets(v, this.full, found);
        for (const z of found) {
          if (!cutMarks.has(z) || doneMarks.has(z) || !this.better(v, z)) continue;
          const zs = this.slots.get(z)!;
          this.parent[zs] = v;
          this.dist[zs] = level + 1;
          queue.add(level + 1, z);
        }
      }
    }
  }

  /** Same parent means same label: the candidates between them did not change. */
  private settleCut(v: number, oldParent: number, delta: TreeDelta): void {
    if (!doneMarks.has(v)) {
      this.release(v);
      this.reachedCount--;
      delta.left.push(v);
    }
    const p = this.parentOf(v);
    if (p === oldParent) return;
    this.touch(v, delta);
    if (this.reached(oldParent)) this.touch(oldParent, delta);
    if (p >= 0) this.touch(p, delta);
  }

  /** Is x (reached, path final) a better parent for y than y's current one? */
  private better(x: number, y: number): boolean {
    const dy = this.depth(y);
    if (dy < 0) return true;
    const dx = this.depth(x) + 1;
    if (dx !== dy) return dx < dy;
    const p = this.parentOf(y);
    return p !== x && this.precedes(x, p);
  }

  /** Does a's path sort before b's? Both on the same level, a ≠ b. */
  private precedes(a: number, b: number): boolean {
    for (let pa = this.parentOf(a), pb = this.parentOf(b); pa !== pb; ) {
      a = pa;
      b = pb;
      pa = this.parentOf(a);
      pb = this.parentOf(b);
    }
    const ids = this.graph.spaces.ids;
    return ids[a]! < ids[b]!;
  }

  private move(y: number, x: number, delta: TreeDelta): void {
    const old = this.parentOf(y);
    const ids = this.graph.spaces.ids;
    if (old >= 0) {
      const os = this.slots.get(old)!;
      this.kids[os] = removeById(this.kids[os]!, y, ids);
      this.touch(old, delta);
    } else {
      this.reachedCount++;
      delta.entered.push(y);
    }
    this.place1(y, x, this.depth(x) + 1, this.graph.firstLabel(x, y, this.full));
    const xs = this.slots.get(x)!;
    this.kids[xs] = insertById(this.kids[xs], y, ids);
    this.touch(x, delta);
    this.touch(y, delta);
  }

  private relabel(y: number, delta: TreeDelta): void {
    const s = this.slots.get(y)!;
    const next = this.graph.firstLabel(this.parent[s]!, y, this.full);
    if (next === this.label[s]) return;
    this.label[s] = next;
    this.touch(y, delta);
  }

  private touch(v: number, delta: TreeDelta): void {
    if (touchedMarks.add(v)) delta.touched.push(v);
  }

  /** `v`'s slot, a new one (level and parent -1) when it has none. */
  private claim(v: number): number {
    let s = this.slots.get(v);
    if (s !== undefined) return s;
    // With no free slot, every slot below the count is taken.
    s = this.freeSlots.pop() ?? this.slots.size;
    if (s >= this.dist.length) this.grow();
    this.slots.set(v, s);
    this.dist[s] = -1;
    this.parent[s] = -1;
    this.label[s] = NO_EDGE;
    this.kids[s] = undefined;
    return s;
  }

  private release(v: number): void {
    const s = this.slots.get(v);
    if (s === undefined) return;
    this.slots.delete(v);
    this.kids[s] = undefined;
    this.freeSlots.push(s);
  }

  private grow(): void {
    const size = this.dist.length * 2;
    this.dist = grown(this.dist, size);
    this.parent = grown(this.parent, size);
    this.label = grown(this.label, size);
  }
}

function grown(a: Int32Array, size: number): Int32Array<ArrayBuffer> {
  const next = new Int32Array(size);
  next.set(a);
  return next;
}
