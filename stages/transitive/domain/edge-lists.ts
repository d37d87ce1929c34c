/**
 * Explicit edges per space with their kind bits, in the least memory: an exactly sized array
 * of `other * 4 + bits` (a Map with three entries costs more than twice as much), or a Map
 * once a space has more than a few edges, so lookups stay cheap for hubs.
 */
const HUB = 16;

export class EdgeLists {
  private readonly lists: (number[] | Map<number, number> | undefined)[] = [];

  /** Kind bits of the edge between `x` and `other`, 0 when none. */
  bits(x: number, other: number): number {
    const list = this.lists[x];
    if (list === undefined) return 0;
    if (list instanceof Map) return list.get(other) ?? 0;
    for (const packed of list) if (packed >> 2 === other) return packed & 3;
    return 0;
  }

  set(x: number, other: number, bits: number): void {
    const list = this.lists[x];
    if (list instanceof Map) {
      if (bits === 0) list.delete(other);
      else list.set(other, bits);
      return;
    }
    const at = list ? list.findIndex((packed) => packed >> 2 === other) : -1;
    const packed = other * 4 + bits;
    let next = list ?? [];
    if (at >= 0) next = bits === 0 ? next.toSpliced(at, 1) : next.with(at, packed);
    else if (bits !== 0) next = next.toSpliced(next.length, 0, packed);
    if (next.length > HUB) this.lists[x] = new Map(next.map((p): [number, number] => [p >> 2, p & 3]));
    else this.lists[x] = next.length > 0 ? next : undefined;
  }

  /** Appends every space `x` has an edge with to `into`. */
  others(x: number, into: number[]): void {
    const list = this.lists[x];
    if (list === undefined) return;
    if (list instanceof Map) for (const other of list.keys()) into.push(other);
    else for (const packed of list) into.push(packed >> 2);
  }

  /** Every (other, bits) of `x`. */
  *entries(x: number): Iterable<[number, number]> {
    const list = this.lists[x];
    if (list instanceof Map) yield* list;
    else if (list) for (const packed of list) yield [packed >> 2, packed & 3];
  }
}
