/**
 * Rebuilding the transitive state from the events (`atlas rebuild transitive`): from the newest
 * snapshot at or before the chosen seq (or from the first event), the validated events up to
 * where the stage stands are applied again with today's code. The rebuilt state replaces the
 * checkpoint, and every root's graph is sent on marked `rebuild`: canonical compares it with
 * what it last emitted, so downstream gets exactly the graphs that differ.
 */
import type { Redis } from 'ioredis';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { JobRefused } from '../../pipeline/control.ts';
import { type Entry, parseEntries } from '../../pipeline/entry.ts';
import type { Keys } from '../../pipeline/keys.ts';
import type { Step } from '../../pipeline/stage.ts';
import { orderKey } from '../../pipeline/worker.ts';
import { streams } from '../streams.ts';
import type { TopologyEvent } from '../topology/events.ts';
import type { CheckpointKeys } from './checkpoint.ts';
import { type GraphState, TopologyGraph } from './domain/topology-graph.ts';
import { listSnapshots, loadSnapshot, type SnapshotRef, snapshotKeys } from './snapshot.ts';

/** Members per write: a Lua call unpacks its arguments, and that has a limit. */
const WRITE_CHUNK = 500;
const PAGE = 1000;

export interface Rebuilt {
  graph: TopologyGraph;
  /** The snapshot it started from (its `next`), or null: from the first event. */
  snapshot: number | null;
  /** Events applied again. */
  events: number;
  /** The first seq not applied (where the stage stands). */
  next: number;
  /** The last applied event, for the meta of the graphs sent. */
  last: TopologyEvent | null;
}

/** Where the stage stands: every seq below this one has been applied (1 = nothing yet). */
export async function appliedUpTo(redis: Redis, keys: Keys): Promise<number> {
  return Number((await redis.hget(orderKey(keys, 'transitive'), '')) ?? 1);
}

export function chooseSnapshot(snapshots: SnapshotRef[], at: number | undefined): SnapshotRef | null {
  const usable = snapshots.filter((s) => at === undefined || s.next - 1 <= at);
  return usable[usable.length - 1] ?? null;
}

export async function rebuildGraph(
  redis: Redis,
  keys: Keys,
  roots: string[],
  at: number | undefined,
  progress: (percent: number) => Promise<void>,
): Promise<Rebuilt> {
  const next = await appliedUpTo(redis, keys);
  const sk = snapshotKeys(keys);
  const chosen = chooseSnapshot(await listSnapshots(redis, sk), at);
  const snapshot = chosen ? await loadSnapshot(redis, sk, chosen.next) : null;
  if (chosen && !snapshot) throw new Error(`snapshot ${chosen.next} vanished while rebuilding; run it again`);
  const from = snapshot?.next ?? 1;
  const events = await eventsBetween(redis, keys, snapshot?.floor ?? '-', from, next, progress);
  const graph = TopologyGraph.fromState(roots, snapshot?.state ?? { topics: [], edges: [], topicEdges: [] });
  let last: TopologyEvent | null = null;
  for (const entry of events) {
    if (entry.has('skip')) continue;
    last = entry.json<TopologyEvent>('event');
    graph.apply(last); // a conflict changes nothing, as when it was first applied (and dead-lettered)
  }
  return { graph, snapshot: snapshot?.next ?? null, events: events.length, next, last };
}

/** The validated entries of seq from…next-1, in seq order; a missing one refuses the rebuild. */
async function eventsBetween(
  redis: Redis,
  keys: Keys,
  start: string,
  from: number,
  next: number,
  progress: (percent: number) => Promise<void>,
): Promise<Entry[]> {
  const stream = keys.stream(streams.validated);
  const bySeq = new Map<number, Entry>();
  let cursor = start;
  for (;;) {
    const raw = (await redis.callBuffer('XRANGE', stream, cursor, '+', 'COUNT', PAGE)) as [
      Buffer,
      Buffer[],
    ][];
    const page = parseEntries(raw);
    const failed = await resolveBlobs(redis, keys, page);
    for (const entry of page) {
      const seq = Number(entry.optionalText('seq'));
      if (!(seq >= from && seq < next) || bySeq.has(seq)) continue;
      const blob = failed.get(entry);
      if (blob) throw new JobRefused(`event seq ${seq} (${entry.id}) cannot be read: ${blob.message}`);
      bySeq.set(seq, entry);
    }
    await progress((bySeq.size / Math.max(1, next - from)) * 90);
    if (page.length < PAGE || bySeq.size === next - from) break;
    cursor = `(${page[page.length - 1]!.id}`;
  }
  const out: Entry[] = [];
  for (let seq = from; seq < next; seq++) {
    const entry = bySeq.get(seq);
    if (!entry)
      throw new JobRefused(
        `${stream} no longer holds event seq ${seq}: cannot rebuild from ${from === 1 ? 'the first event' : `the snapshot at seq ${from}`} (retention trimmed it; see ATLAS_RETAIN_STREAMS and snapshots)`,
      );
    out.push(entry);
  }
  return out;
}

/** The checkpoint replaced by `state`, in the step (chunked writes). */
export function writeState(step: Step, k: CheckpointKeys, state: GraphState): void {
  step.write('DEL', k.topics);
  step.write('DEL', k.edges);
  step.write('DEL', k.topicEdges);
  const pairs = state.topics.flat();
  for (let i = 0; i < pairs.length; i += WRITE_CHUNK * 2)
    step.write('HSET', k.topics, ...pairs.slice(i, i + WRITE_CHUNK * 2));
  const edges = state.edges.map((e) => e.join('|'));
  for (let i = 0; i < edges.length; i += WRITE_CHUNK)
    step.write('SADD', k.edges, ...edges.slice(i, i + WRITE_CHUNK));
  const topicEdges = state.topicEdges.map((e) => e.join('|'));
  for (let i = 0; i < topicEdges.length; i += WRITE_CHUNK)
    step.write('SADD', k.topicEdges, ...topicEdges.slice(i, i + WRITE_CHUNK));
}

/** How many topics and edges differ between two states (added plus removed). */
export function stateDifference(a: GraphState, b: GraphState): number {
  const diff = (x: string[], y: string[]) => {
    const sx = new Set(x);
    const sy = new Set(y);
    let n = 0;
    for (const v of sx) if (!sy.has(v)) n++;
    for (const v of sy) if (!sx.has(v)) n++;
    return n;
  };
  return (
    diff(
      a.topics.map((t) => t.join('|')),
      b.topics.map((t) => t.join('|')),
    ) +
    diff(
      a.edges.map((e) => e.join('|')),
      b.edges.map((e) => e.join('|')),
    ) +
    diff(
      a.topicEdges.map((e) => e.join('|')),
      b.topicEdges.map((e) => e.join('|')),
    )
  );
}

/**
 * The newest applied event still in the validated stream (below `next`), for the meta of a graph
 * sent again when no event of this process carried one; null when none is left.
 */
export async function lastApplied(redis: Redis, keys: Keys, next: number): Promise<TopologyEvent | null> {
  const stream = keys.stream(streams.validated);
  let cursor = '+';
  for (;;) {
    const raw = (await redis.callBuffer('XREVRANGE', stream, cursor, '-', 'COUNT', PAGE)) as [
      Buffer,
      Buffer[],
    ][];
    const page = parseEntries(raw);
    const failed = await resolveBlobs(redis, keys, page);
    for (const entry of page) {
      if (!(Number(entry.optionalText('seq')) < next) || !entry.has('event') || failed.has(entry)) continue;
      return entry.json<TopologyEvent>('event');
    }
    if (page.length < PAGE) return null;
    cursor = `(${page[page.length - 1]!.id}`;
  }
}
