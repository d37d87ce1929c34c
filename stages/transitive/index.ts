/**
 * Stage `transitive`: applies events in global `seq` order to the topology and writes the
 * canonical graph of every configured root the event may have changed. Singleton (lease +
 * fencing); its state is checkpointed as deltas atomically with its output.
 */

import type { Entry } from '../../pipeline/entry.ts';
import { streams } from '../../pipeline/keys.ts';
import { Rejection, type StageFactory } from '../../pipeline/stage.ts';
import type { TopologyEvent } from '../topology/events.ts';
import { toWire } from '../topology/graph-wire.ts';
import { checkpointKeys, loadOutSeq, loadState, writeDelta } from './checkpoint.ts';
import { TopologyGraph } from './domain/topology-graph.ts';

export const createTransitive: StageFactory = ({ config, redis, keys, log }) => {
  const roots = config.ATLAS_ROOT_SPACE_ID;
  const k = checkpointKeys(keys);
  let graph = new TopologyGraph(roots);
  /** Hash last written per root by this process; a restart writes each root once more (canonical dedups). */
  const lastSent = new Map<string, string>();
  /**
   * Outputs are numbered 1, 2, 3… (`out_seq`, checkpointed with them), so that canonical — which
   * must see a root's graphs in the order they were made — can have the runtime re-sequence
   * them: a re-read of its own pending entries (after a lost reply, a takeover) comes in late.
   */
  let outSeq = 0;
  if (roots.length === 0) log.warn('ATLAS_ROOT_SPACE_ID is empty: no canonical graphs will be computed');

  /** The graph and the output numbering as last committed (after a failed step, or on activation). */
  async function restore(): Promise<void> {
    graph = TopologyGraph.fromState(roots, await loadState(redis, k));
    outSeq = await loadOutSeq(redis, k);
    lastSent.clear();
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
    handle(entries, step) {
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

      function send(root: string, event: TopologyEvent, entry: Entry): void {
        const { tree, canonical_space_ids } = graph.canonical(root);
        if (lastSent.get(root) === tree.hash) return;
        lastSent.set(root, tree.hash);
        const wire = toWire({ root_id: root, tree, canonical_space_ids, meta: event.meta });
        step.send({
          root,
          event_seq: entry.text('seq'),
          event_id: entry.text('event_id'),
          hash: wire.hash,
          graph: JSON.stringify(wire),
          received_at: entry.text('received_at'),
          traceparent: entry.text('traceparent'),
          out_seq: String(++outSeq),
        });
        step.write('SET', k.outSeq, String(outSeq));
      }
    },
  };
};
