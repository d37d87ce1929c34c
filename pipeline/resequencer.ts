/**
 * Restores dense sequence order per key (one key for a global order, one per root for
 * per-root order). Items ahead of a gap wait in a bounded buffer; what does not fit is
 * refused ('spill') and stays pending in Redis, to be read again once the gap has filled.
 * `ready()` only looks; `consume()` moves the order forward, so a failed commit changes nothing.
 */
export type Offer = 'held' | 'stale' | 'duplicate' | 'spill';

export class Resequencer<T> {
  private readonly capacity: number;
  private readonly start: bigint;
  private readonly nextByKey = new Map<string, bigint>();
  private readonly waiting = new Map<string, Map<bigint, T>>();
  private held = 0;

  constructor(capacity: number, start = 1n) {
    this.capacity = capacity;
    this.start = start;
  }

  next(key: string): bigint {
    return this.nextByKey.get(key) ?? this.start;
  }

  /** Moves a key's order forward (never back): restored checkpoints, what a sink already has. */
  setNext(key: string, next: bigint): void {
    if (next > this.next(key)) this.nextByKey.set(key, next);
    const queue = this.waiting.get(key);
    if (!queue) return;
    for (const seq of queue.keys()) {
      if (seq < next) {
        queue.delete(seq);
        this.held--;
      }
    }
  }

  offer(key: string, seq: bigint, item: T): Offer {
    if (seq < this.next(key)) return 'stale';
    let queue = this.waiting.get(key);
    if (queue?.has(seq)) return 'duplicate';
    if (this.held >= this.capacity && seq !== this.next(key)) return 'spill';
    if (!queue) {
      queue = new Map();
      this.waiting.set(key, queue);
    }
    queue.set(seq, item);
    this.held++;
    return 'held';
  }

  peek(key: string, seq: bigint): T | undefined {
    return this.waiting.get(key)?.get(seq);
  }

  /** Items that can go now, in order per key, with the next value each key would move to. */
  ready(): { items: T[]; advance: Map<string, bigint> } {
    const items: T[] = [];
    const advance = new Map<string, bigint>();
    for (const [key, queue] of this.waiting) {
      let next = this.next(key);
      for (let item = queue.get(next); item !== undefined; item = queue.get(++next)) items.push(item);
      if (next !== this.next(key)) advance.set(key, next);
    }
    return { items, advance };
  }

  consume(advance: Map<string, bigint>): void {
    for (const [key, next] of advance) this.setNext(key, next);
    for (const [key, queue] of this.waiting) if (queue.size === 0) this.waiting.delete(key);
  }

  get size(): number {
    return this.held;
  }

  get full(): boolean {
    return this.held >= this.capacity;
  }
}
