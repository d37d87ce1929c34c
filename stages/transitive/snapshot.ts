/**
 * Snapshots of the transitive state: the whole topology as of an event seq, so a rebuild starts
 * there instead of at the first event. Taken every ATLAS_SNAPSHOT_EVERY entries in the step that
 * commits them (and by an `atlas snapshot` job); the newest ATLAS_SNAPSHOT_KEEP are kept.
 *
 * Each snapshot records `floor`: the oldest entry of the validated stream a rebuild from it may
 * need (the oldest entry pending at the time, else the next one to be delivered). Entries of a
 * seq past the snapshot can only be pending or still unread then, never acknowledged before it.
 * Retention keeps the validated stream from the floor of the oldest kept snapshot on; with no
 * snapshot at all it keeps the whole stream (a rebuild then starts at the first event).
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../../pipeline/keys.ts';
import type { Step } from '../../pipeline/stage.ts';
import type { GraphState } from './domain/topology-graph.ts';

export interface Snapshot {
  /** The first event seq not in the state (every seq below it is). */
  next: number;
  floor: string;
  takenAt: string;
  state: GraphState;
}

export interface SnapshotKeys {
  /** Hash: next → floor, one field per kept snapshot. */
  index: string;
  snapshot(next: number): string;
}

export function snapshotKeys(keys: Keys): SnapshotKeys {
  return {
    index: keys.of('transitive', 'snapshots'),
    snapshot: (next) => keys.of('transitive', 'snapshot', String(next)),
  };
}

export interface SnapshotRef {
  next: number;
  floor: string;
}

/** The kept snapshots, oldest first. */
export async function listSnapshots(redis: Redis, k: SnapshotKeys): Promise<SnapshotRef[]> {
  const all = await redis.hgetall(k.index);
  return Object.entries(all)
    .map(([next, floor]) => ({ next: Number(next), floor }))
    .sort((a, b) => a.next - b.next);
}

export async function loadSnapshot(redis: Redis, k: SnapshotKeys, next: number): Promise<Snapshot | null> {
  const json = await redis.get(k.snapshot(next));
  return json ? (JSON.parse(json) as Snapshot) : null;
}

/**
 * Writes a snapshot in the step, and drops the oldest beyond `keep`; returns the refs kept.
 * Twice the same `next` (a retried step) overwrites the same key.
 */
export function writeSnapshot(
  step: Step,
  k: SnapshotKeys,
  snapshot: Snapshot,
  kept: SnapshotRef[],
  keep: number,
): SnapshotRef[] {
  step.write('SET', k.snapshot(snapshot.next), JSON.stringify(snapshot));
  step.write('HSET', k.index, String(snapshot.next), snapshot.floor);
  const all = [
    ...kept.filter((s) => s.next !== snapshot.next),
    { next: snapshot.next, floor: snapshot.floor },
  ].sort((a, b) => a.next - b.next);
  const dropped = all.slice(0, Math.max(0, all.length - keep));
  for (const old of dropped) {
    step.write('DEL', k.snapshot(old.next));
    step.write('HDEL', k.index, String(old.next));
  }
  return all.slice(dropped.length);
}

/** The oldest entry of `stream` that a rebuild from a snapshot taken now could need. */
export async function floorNow(redis: Redis, stream: string, group: string): Promise<string> {
  const summary = (await redis.xpending(stream, group)) as [number, string | null, string | null, unknown];
  if (summary[0] > 0 && summary[1]) return summary[1];
  const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  const mine = groups.find((g) => g[g.indexOf('name') + 1] === group);
  const last = mine ? String(mine[mine.indexOf('last-delivered-id') + 1]) : '0-0';
  const [ms, seq] = last.split('-');
  return `${ms}-${BigInt(seq ?? '0') + 1n}`;
}
