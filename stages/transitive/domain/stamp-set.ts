/** A set of small integers cleared in O(1): a member carries the current epoch's stamp. */
export class StampSet {
  private stamps = new Int32Array(1024);
  private epoch = 1;

  clear(): void {
    if (this.epoch === 0x7fffffff) {
      this.stamps.fill(0);
      this.epoch = 0;
    }
    this.epoch++;
  }

  /** True when `v` was not yet a member. */
  add(v: number): boolean {
    if (v >= this.stamps.length) this.grow(v);
    if (this.stamps[v] === this.epoch) return false;
    this.stamps[v] = this.epoch;
    return true;
  }

  has(v: number): boolean {
    return this.stamps[v] === this.epoch;
  }

  private grow(v: number): void {
    const next = new Int32Array(Math.max(v + 1, this.stamps.length * 2));
    next.set(this.stamps);
    this.stamps = next;
  }
}
