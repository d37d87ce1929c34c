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

/** Adds `x` to a list kept in id order; false when already there. */
export function insertById(list: number[], x: number, ids: readonly string[]): boolean {
  const at = search(list, x, ids);
  if (list[at] === x) return false;
  list.splice(at, 0, x);
  return true;
}

/** Removes `x` from a list kept in id order; false when absent. */
export function removeById(list: number[], x: number, ids: readonly string[]): boolean {
  const at = search(list, x, ids);
  if (list[at] !== x) return false;
  list.splice(at, 1);
  return true;
}

export function sortById(list: number[], ids: readonly string[]): number[] {
  return list.sort((a, b) => (ids[a]! < ids[b]! ? -1 : ids[a]! > ids[b]! ? 1 : 0));
}
