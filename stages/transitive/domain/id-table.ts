/** Dense integer handles for ids, so per-space state can live in arrays indexed by handle. */
export class IdTable {
  readonly ids: string[] = [];
  private readonly byId = new Map<string, number>();

  get size(): number {
    return this.ids.length;
  }

  find(id: string): number | undefined {
    return this.byId.get(id);
  }

  intern(id: string): number {
    let handle = this.byId.get(id);
    if (handle === undefined) {
      handle = this.ids.length;
      this.ids.push(id);
      this.byId.set(id, handle);
    }
    return handle;
  }

  id(handle: number): string {
    return this.ids[handle]!;
  }
}

/** Position of `x` in `list` (kept in id order), or where it would go. */
function search(list: readonly number[], x: number, ids: readonly string[]): number {
  const key = ids[x]!;
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[list[mid]!]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Below this length a list is copied on change, to stay exactly sized (no growth slack). */
const SMALL = 32;

/** `list` (in id order, possibly missing) with `x` added; the result replaces it. */
export function insertById(list: number[] | undefined, x: number, ids: readonly string[]): number[] {
  if (list === undefined) return [x];
  const at = search(list, x, ids);
  if (list[at] === x) return list;
  if (list.length < SMALL) return list.toSpliced(at, 0, x);
  list.splice(at, 0, x);
  return list;
}

/** `list` (in id order) without `x`, undefined once empty; the result replaces it. */
export function removeById(list: number[], x: number, ids: readonly string[]): number[] | undefined {
  const at = search(list, x, ids);
  if (list[at] !== x) return list;
  if (list.length === 1) return undefined;
  if (list.length < SMALL) return list.toSpliced(at, 1);
  list.splice(at, 1);
  return list;
}

export function sortById(list: number[], ids: readonly string[]): number[] {
  return list.sort((a, b) => (ids[a]! < ids[b]! ? -1 : ids[a]! > ids[b]! ? 1 : 0));
}
