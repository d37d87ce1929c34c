/** Work items grouped by tree level and handed out one level at a time, lowest first. */
export class LevelQueue {
  private readonly buckets = new Map<number, number[]>();
  /** Binary min-heap of the levels that have a bucket. */
  private readonly levels: number[] = [];

  add(level: number, node: number): void {
    const bucket = this.buckets.get(level);
    if (bucket) bucket.push(node);
    else {
      this.buckets.set(level, [node]);
      this.pushLevel(level);
    }
  }

  /** Removes the lowest level with its nodes; undefined when empty. */
  take(): [number, number[]] | undefined {
    const level = this.popLevel();
    if (level === undefined) return undefined;
    const bucket = this.buckets.get(level)!;
    this.buckets.delete(level);
    return [level, bucket];
  }

  private pushLevel(level: number): void {
    const heap = this.levels;
    let i = heap.push(level) - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (heap[up]! <= level) break;
      heap[i] = heap[up]!;
      i = up;
    }
    heap[i] = level;
  }

  private popLevel(): number | undefined {
    const heap = this.levels;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]! < heap[left]! ? right : left;
      if (heap[child]! >= last) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
    return top;
  }
}

/** Nodes ordered deepest first (counting sort: depths are small integers). */
export function deepestFirst(nodes: readonly number[], depthOf: (v: number) => number): number[] {
  let max = 0;
  for (const v of nodes) max = Math.max(max, depthOf(v));
  const counts = new Int32Array(max + 2);
  for (const v of nodes) counts[max - depthOf(v) + 1]!++;
  for (let i = 1; i < counts.length; i++) counts[i]! += counts[i - 1]!;
  const out = new Array<number>(nodes.length);
  for (const v of nodes) out[counts[max - depthOf(v)]!++] = v;
  return out;
}
