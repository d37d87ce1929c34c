/**
 * Stage `canonical`: change detection against the last emitted graph of each root and dense
 * per-root sequence numbers (1, 2, 3… never repeated: they are committed with the output).
 * With ATLAS_CONFLATE_MS > 0 the changes of a root within the window leave as one emission;
 * the inputs stay pending until then, so a crash loses nothing.
 */
import { JobRefused } from '../../pipeline/control.ts';
import type { Entry } from '../../pipeline/entry.ts';
import type { StageFactory, Step } from '../../pipeline/stage.ts';
import { streams } from '../streams.ts';
import { freshTraceparent } from '../topology/traceparent.ts';
import { latestGraphs } from './latest.ts';
import { canonicalStore, type Emitted, loadEmitted, recordEmission } from './store.ts';

interface Pending {
  since: number;
  entries: Map<string, Entry>;
  latest: Entry;
}

export const createCanonical: StageFactory = ({ config, redis, keys }) => {
  const store = canonicalStore(keys);
  const conflateMs = config.ATLAS_CONFLATE_MS;
  let emitted = new Map<string, Emitted>();
  const pending = new Map<string, Pending>();

  /** Emits `latest` for its root if the tree differs from the last emission; acks `inputs`. */
  function settle(step: Step, latest: Entry, inputs: Iterable<Entry>): void {
    const root = latest.text('root');
    const eventSeq = Number(latest.text('event_seq'));
    const last = emitted.get(root);
    const hash = latest.text('hash');
    // A rebuild's graph is as of the newest event already seen: compared, not passed over as old.
    const newer = latest.has('rebuild')
      ? eventSeq >= (last?.event_seq ?? 0)
      : eventSeq > (last?.event_seq ?? 0);
    if (!last || (last.hash !== hash && newer))
      emit(step, root, hash, latest.text('graph'), eventSeq, latest);
    for (const e of inputs) step.ack(e);
  }

  /**
   * One update of `root`, numbered after the last one emitted, recorded with it: sent for `input`
   * (the runtime carries its context), or, for an operator's job no request caused (a republish,
   * a rebuild), with a fresh context.
   */
  function emit(
    step: Step,
    root: string,
    hash: string,
    graph: string,
    eventSeq: number,
    input: Entry | 'operator',
  ): void {
    const next: Emitted = {
      hash,
      sequence_number: (emitted.get(root)?.sequence_number ?? 0) + 1,
      event_seq: eventSeq,
    };
    const fields = {
      root,
      sequence_number: String(next.sequence_number),
      event_seq: String(eventSeq),
      hash,
      graph,
    };
    if (input !== 'operator') step.sendFor(input, fields);
    else step.send({ ...fields, received_at: String(Date.now()), traceparent: freshTraceparent() });
    recordEmission(step, store, root, next, graph);
    emitted.set(root, next);
  }

  function hold(entry: Entry): void {
    const root = entry.text('root');
    const p = pending.get(root) ?? { since: Date.now(), entries: new Map(), latest: entry };
    p.entries.set(entry.id, entry);
    if (Number(entry.text('event_seq')) >= Number(p.latest.text('event_seq'))) p.latest = entry;
    pending.set(root, p);
  }

  return {
    name: 'canonical',
    input: streams.transitive,
    output: streams.canonical,
    singleton: true,
    // A root's graphs in the order transitive made them, whatever order they are read in (a
    // re-read of pending entries comes late): an older graph read after a newer one would be
    // dropped as stale, and its update lost. With conflation, inputs are held unacknowledged
    // across steps, which an order checkpoint would pass over; the window keeps the latest anyway.
    ...(conflateMs > 0 ? {} : { order: { seq: 'out_seq' } }),
    async activate() {
      emitted = await loadEmitted(redis, store);
      pending.clear();
      return undefined;
    },
    async reset() {
      emitted = await loadEmitted(redis, store);
      pending.clear();
    },
    jobs: {
      /** The last emitted graph of a root (or of all) again, as a new update. */
      async republish(data, ctx) {
        const roots = data.all === true ? [...emitted.keys()] : [String(data.root)];
        const missing = roots.filter((r) => !emitted.has(r));
        if (missing.length > 0) throw new JobRefused(`no graph emitted yet for root ${missing.join(', ')}`);
        const graphs = await Promise.all(roots.map((r) => redis.get(store.graph(r))));
        const result = {
          summary: `republished ${roots.length} root graph(s) as new updates`,
          republished: roots.length,
          sequenceNumbers: {} as Record<string, number>,
        };
        await ctx.commit((step) => {
          roots.forEach((root, i) => {
            const last = emitted.get(root)!;
            emit(step, root, last.hash, graphs[i]!, last.event_seq, 'operator');
            result.sequenceNumbers[root] = last.sequence_number + 1;
          });
        }, result);
        return result;
      },
      /**
       * Compares the newest graph of each root in the transitive stream with the last emitted
       * one and emits those that differ (after canonical's own store was damaged or lost).
       */
      async rebuild(_data, ctx) {
        const latest = await latestGraphs(redis, keys);
        const differing = [...latest].filter(([root, e]) => emitted.get(root)?.hash !== e.hash);
        const result = {
          summary: `canonical compared ${latest.size} root graphs of the transitive stream with the last emitted: ${differing.length} differed and were emitted`,
          compared: latest.size,
          emitted: differing.length,
        };
        await ctx.commit((step) => {
          for (const [root, e] of differing)
            emit(
              step,
              root,
              e.hash,
              e.graph,
              Math.max(e.eventSeq, emitted.get(root)?.event_seq ?? 0),
              'operator',
            );
        }, result);
        return result;
      },
    },
    handle(entries, step) {
      for (const entry of entries) {
        if (conflateMs > 0) hold(entry);
        else settle(step, entry, [entry]);
      }
    },
    ...(conflateMs > 0
      ? {
          tick: {
            everyMs: Math.max(5, Math.floor(conflateMs / 4)),
            run(step: Step) {
              const now = Date.now();
              for (const [root, p] of pending) {
                if (now - p.since < conflateMs) continue;
                settle(step, p.latest, p.entries.values());
                pending.delete(root);
              }
            },
          },
        }
      : {}),
  };
};
