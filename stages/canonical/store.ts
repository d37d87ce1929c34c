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
