/**
 * Stage `canonical`: change detection against the last emitted graph of each root and dense
 * per-root sequence numbers (1, 2, 3… never repeated: they are committed with the output).
 * With ATLAS_CONFLATE_MS > 0 the changes of a root within the window leave as one emission;
 * the inputs stay pending until then, so a crash loses nothing.
 */
import type { Entry } from '../../pipeline/entry.ts';
import { streams } from '../../pipeline/keys.ts';
import type { StageFactory, Step } from '../../pipeline/stage.ts';
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
    if (!last || (last.hash !== hash && eventSeq > last.event_seq)) {
      const next: Emitted = { hash, sequence_number: (last?.sequence_number ?? 0) + 1, event_seq: eventSeq };
      const graph = latest.text('graph');
      step.send({
        root,
        sequence_number: String(next.sequence_number),
        event_seq: String(eventSeq),
        hash,
        graph,
        received_at: latest.text('received_at'),
        traceparent: latest.text('traceparent'),
      });
      recordEmission(step, store, root, next, graph);
      emitted.set(root, next);
    }
    for (const e of inputs) step.ack(e);
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
