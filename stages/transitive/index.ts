/**
 * Stage `transitive`: applies events in global `seq` order to the topology and writes the
 * canonical graph of every configured root the event may have changed. Singleton (lease +
 * fencing); its state is checkpointed as deltas atomically with its output.
 *
 * Each graph goes to canonical as a delta from the one sent before for its root (`delta`,
 * `stages/topology/graph-delta.ts`). The sender's table is not checkpointed: after a restart or
 * a failed step (`restore`) and for a rebuild, a fresh sender makes each root's next graph a
 * whole table, which canonical applies whatever it held. Canonical, lacking a delta's base,
 * asks for one with the control job `resend`.
 */

import { type JobContext, JobRefused, type JobResult } from '../../pipeline/control.ts';
import type { Entry } from '../../pipeline/entry.ts';
import { Rejection, type StageFactory, type Step } from '../../pipeline/stage.ts';
import { streams } from '../streams.ts';
import type { TopologyEvent } from '../topology/events.ts';
import { DeltaSender } from '../topology/graph-delta.ts';
import { freshTraceparent } from '../topology/traceparent.ts';
import { checkpointKeys, loadOutSeq, loadState, writeDelta } from './checkpoint.ts';
import type { Canonical } from './domain/canonical-tree.ts';
import { TopologyGraph } from './domain/topology-graph.ts';
import { appliedUpTo, lastApplied, rebuildGraph, stateDifference, writeState } from './rebuild.ts';
import { floorNow, listSnapshots, type SnapshotRef, snapshotKeys, writeSnapshot } from './snapshot.ts';

export const createTransitive: StageFactory = ({ config, redis, keys, log }) => {
  const roots = config.ATLAS_ROOT_SPACE_ID;
  const k = checkpointKeys(keys);
  let graph = new TopologyGraph(roots);
  /** Hash last written per root by this process; a restart writes each root once more (canonical dedups). */
  const lastSent = new Map<string, string>();
  /** What canonical holds per root, as far as this process sent it. */
  let sender = new DeltaSender();
  /** Meta of the graph last sent per root, for a resend. */
  const lastMeta = new Map<string, TopologyEvent['meta']>();
  /**
   * Outputs are numbered 1, 2, 3… (`out_seq`, checkpointed with them), so that canonical — which
   * must see a root's graphs in the order they were made — can have the runtime re-sequence
   * them: a re-read of its own pending entries (after a lost reply, a takeover) comes in late.
   */
  let outSeq = 0;
  const sk = snapshotKeys(keys);
  /** The kept snapshots (oldest first), and entries applied since the last one. */
  let snapshots: SnapshotRef[] = [];
  let sinceSnapshot = 0;
  if (roots.length === 0) log.warn('ATLAS_ROOT_SPACE_ID is empty: no canonical graphs will be computed');

  /** The graph and the output numbering as last committed (after a failed step, or on activation). */
  async function restore(): Promise<void> {
    graph = TopologyGraph.fromState(roots, await loadState(redis, k));
    outSeq = await loadOutSeq(redis, k);
    snapshots = await listSnapshots(redis, sk);
    lastSent.clear();
    lastMeta.clear();
    sender = new DeltaSender();
  }

  /** Writes a snapshot of the graph (as of `next`) in the step. */
  async function snapshotInto(step: Step, next: number): Promise<void> {
    const floor = await floorNow(redis, keys.stream(streams.validated), 'transitive');
    const state = graph.state();
    snapshots = writeSnapshot(
      step,
      sk,
      { next, floor, takenAt: new Date().toISOString(), state },
      snapshots,
      config.ATLAS_SNAPSHOT_KEEP,
    );
    sinceSnapshot = 0;
  }

  /**
   * A graph of `root` onto the output, numbered next: sent for `input` (the runtime carries its
   * context), or for a rebuild, which no request caused, with a fresh context and `rebuild` set
   * for canonical's comparison (`resend`: canonical asked for the whole graph).
   */
  function sendGraph(
    step: Step,
    root: string,
    { graph: trees, canonical_space_ids }: Canonical,
    meta: TopologyEvent['meta'],
    fields: { event_seq: string; event_id: string },
    input: Entry | 'rebuild' | 'resend',
  ): void {
    lastSent.set(root, trees.hash);
    lastMeta.set(root, meta);
    const delta = sender.delta(root, trees, canonical_space_ids, meta);
    const out = {
      root,
      hash: trees.hash,
      delta: JSON.stringify(delta),
      ...fields,
      out_seq: String(++outSeq),
    };
    if (typeof input !== 'string') step.sendFor(input, out);
    else
      step.send({ ...out, received_at: String(Date.now()), traceparent: freshTraceparent(), [input]: '1' });
    step.write('SET', k.outSeq, String(outSeq));
  }

  async function rebuildJob(data: Record<string, unknown>, ctx: JobContext): Promise<JobResult> {
    const at = typeof data.at === 'number' ? data.at : undefined;
    const before = await loadState(redis, k);
    const rebuilt = await rebuildGraph(redis, keys, roots, at, ctx.progress);
    const changes = stateDifference(before, rebuilt.graph.state());
    const origin = rebuilt.snapshot === null ? 'the first event' : `the snapshot at seq ${rebuilt.snapshot}`;
    const result: JobResult = {
      summary: `transitive rebuilt from ${origin}: ${rebuilt.events} events applied again, ${changes} topics/edges differ from the old state; ${roots.length} root graphs sent to canonical, which emits those that differ`,
      from: rebuilt.snapshot ?? 0,
      events: rebuilt.events,
      stateChanges: changes,
      rootsCompared: rebuilt.last ? roots.length : 0,
    };
    graph = rebuilt.graph;
    sender = new DeltaSender(); // whole graphs: canonical compares them with what it emitted
    await ctx.commit((step) => {
      writeState(step, k, graph.state());
      const last = rebuilt.last;
      if (!last) return;
      for (const root of roots)
        sendGraph(
          step,
          root,
          graph.canonical(root),
          last.meta,
          { event_seq: String(rebuilt.next - 1), event_id: 'rebuild' },
          'rebuild',
        );
    }, result);
    return result;
  }

  /**
   * Canonical lacks the base of a root's deltas (its state lost or damaged): the root's whole
   * graph as it stands, numbered on like any output.
   */
  async function resendJob(data: Record<string, unknown>, ctx: JobContext): Promise<JobResult> {
    const asked = data.all === true ? roots : [String(data.root)];
    const unknown = asked.filter((r) => !roots.includes(r));
    if (unknown.length > 0) throw new JobRefused(`not a configured root: ${unknown.join(', ')}`);
    const next = await appliedUpTo(redis, keys);
    const fallback = asked.every((r) => lastMeta.has(r)) ? null : await lastApplied(redis, keys, next);
    const sendable = asked.filter((r) => lastMeta.has(r) || fallback);
    const result: JobResult = {
      summary: `transitive sent the whole graph of ${sendable.length} root(s) to canonical${sendable.length < asked.length ? ` (${asked.length - sendable.length} without any applied event: their first event sends them whole)` : ''}`,
      sent: sendable.length,
    };
    await ctx.commit((step) => {
      for (const root of sendable) {
        sender.forget(root);
        const meta = lastMeta.get(root) ?? fallback!.meta;
        const fields = { event_seq: String(next - 1), event_id: 'resend' };
        sendGraph(step, root, graph.canonical(root), meta, fields, 'resend');
      }
    }, result);
    return result;
  }

  async function snapshotJob(_data: Record<string, unknown>, ctx: JobContext): Promise<JobResult> {
    const next = await appliedUpTo(redis, keys);
    const result: JobResult = {
      summary: `snapshot of the transitive state at seq ${next} taken (${config.ATLAS_SNAPSHOT_KEEP} kept at most)`,
      next,
    };
    await ctx.commit((step) => snapshotInto(step, next), result);
    return result;
  }

  return {
    name: 'transitive',
    input: streams.validated,
    output: streams.transitive,
    order: { seq: 'seq' },
    singleton: true,
    async activate() {
      await restore();
      return undefined;
    },
    reset: restore,
    jobs: {
      rebuild: async (data, ctx) => {
        try {
          return await rebuildJob(data, ctx);
        } catch (err) {
          await restore(); // the graph in memory may be the rebuilt one that was never committed
          throw err;
        }
      },
      snapshot: snapshotJob,
      resend: async (data, ctx) => {
        try {
          return await resendJob(data, ctx);
        } catch (err) {
          await restore(); // the sender forgot roots for a step that was not committed
          throw err;
        }
      },
    },
    async inputFloor() {
      // No snapshot yet: a rebuild starts at the first event, so the whole stream is kept.
      return snapshots[0]?.floor ?? '0-0';
    },
    async handle(entries, step) {
      for (const entry of entries) {
        if (entry.has('skip')) {
          step.ack(entry);
          continue;
        }
        const event = entry.json<TopologyEvent>('event');
        const result = graph.apply(event);
        if (result.outcome === 'conflict') {
          const message = `space ${(event as { space_id: string }).space_id} exists with another topic`;
          step.deadLetter(entry, 'space_conflict', new Rejection('space_conflict', message));
          continue;
        }
        if (result.outcome === 'applied') writeDelta(step, k, event);
        const due = new Set(result.rootsToRecompute);
        for (const root of roots) if (!lastSent.has(root)) due.add(root);
        for (const root of due) send(root, event, entry);
        step.ack(entry);
      }
      sinceSnapshot += entries.length;
      const every = config.ATLAS_SNAPSHOT_EVERY;
      const last = entries[entries.length - 1];
      if (every > 0 && sinceSnapshot >= every && last) await snapshotInto(step, Number(last.text('seq')) + 1);

      function send(root: string, event: TopologyEvent, entry: Entry): void {
        const canonical = graph.canonical(root);
        if (lastSent.get(root) === canonical.graph.hash) return;
        sendGraph(
          step,
          root,
          canonical,
          event.meta,
          {
            event_seq: entry.text('seq'),
            event_id: entry.text('event_id'),
          },
          entry,
        );
      }
    },
  };
};
