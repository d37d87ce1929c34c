/**
 * What the canonical stage remembers per root: the last *emitted* graph (queryable by
 * `atlas canonical show`), its sequence number and the last event it included.
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../../pipeline/keys.ts';
import type { Step } from '../../pipeline/stage.ts';
import type { GraphWire } from '../topology/graph-wire.ts';

export interface Emitted {
  hash: string;
  sequence_number: number;
  event_seq: number;
}

export interface CanonicalStore {
  roots: string;
  graph(root: string): string;
}

export function canonicalStore(keys: Keys): CanonicalStore {
  return { roots: keys.of('canonical', 'roots'), graph: (root) => keys.of('canonical', 'graph', root) };
}

export async function loadEmitted(redis: Redis, store: CanonicalStore): Promise<Map<string, Emitted>> {
  const all = await redis.hgetall(store.roots);
  return new Map(Object.entries(all).map(([root, json]) => [root, JSON.parse(json) as Emitted]));
}

/** Records an emission in the same atomic step as the output entry. */
export function recordEmission(
  step: Step,
  store: CanonicalStore,
  root: string,
  emitted: Emitted,
  graphJson: string,
): void {
  step.write('HSET', store.roots, root, JSON.stringify(emitted));
  step.write('SET', store.graph(root), graphJson);
}

export async function readCurrent(
  redis: Redis,
  store: CanonicalStore,
  root: string,
): Promise<{ emitted: Emitted; graph: GraphWire } | undefined> {
  // One MULTI: two separate reads could straddle a commit and pair a number with another graph.
  const replies = (await redis.multi().hget(store.roots, root).get(store.graph(root)).exec()) ?? [];
  const [emitted, graph] = replies.map(([err, value]) => {
    if (err) throw err;
    return value as string | null;
  });
  if (!emitted || !graph) return undefined;
  return { emitted: JSON.parse(emitted) as Emitted, graph: JSON.parse(graph) as GraphWire };
}

/**
 * After lost state (`atlas recover`): each root's next emission numbers after what the output
 * already holds, so sequence numbers never repeat whatever was lost. The recorded hash is
 * emptied, so the first graph after recovery is emitted whatever it is. Returns the roots moved.
 */
export async function continueAfter(
  redis: Redis,
  store: CanonicalStore,
  published: ReadonlyMap<string, bigint>,
): Promise<number> {
  const known = await loadEmitted(redis, store);
  const multi = redis.multi();
  let moved = 0;
  for (const [root, seq] of published) {
    if (BigInt(known.get(root)?.sequence_number ?? 0) >= seq) continue;
    const emitted: Emitted = { hash: '', sequence_number: Number(seq), event_seq: 0 };
    multi.hset(store.roots, root, JSON.stringify(emitted));
    moved++;
  }
  await multi.exec();
  return moved;
}
