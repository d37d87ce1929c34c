/**
 * Stage `canonical`: change detection against the last emitted graph of each root and dense
 * per-root sequence numbers (1, 2, 3… never repeated: they are committed with the output).
 * With ATLAS_CONFLATE_MS > 0 the changes of a root within the window leave as one emission;
 * the inputs stay pending until then, so a crash loses nothing.
 *
 * Transitive sends each root's graph as a delta from the one it sent before (`delta`, see
 * `stages/topology/graph-delta.ts`); this stage holds each root's table, persisted delta by
 * delta in the step that acknowledges it (store.ts), so a restart or a failover goes on from
 * it. A delta whose base it does not hold (its store lost or damaged) is never guessed at: it
 * asks transitive for the root's whole graph (control job `resend`), says so (error log,
 * atlas_graph_resends_total) and emits nothing for that root until the whole graph arrives.
 */
import type { Queue } from 'bullmq';
import { controlQueue, enqueue, JobRefused } from '../../pipeline/control.ts';
import type { Entry } from '../../pipeline/entry.ts';
import { metrics } from '../../pipeline/metrics.ts';
import type { StageFactory, Step } from '../../pipeline/stage.ts';
import { streams } from '../streams.ts';
import {
  type DeltaNode,
  DeltaReceiver,
  type GraphDelta,
  MissingSubtreeError,
} from '../topology/graph-delta.ts';
import { compareIds } from '../topology/ids.ts';
import { freshTraceparent } from '../topology/traceparent.ts';
import {
  canonicalStore,
  type Emitted,
  loadEmitted,
  loadTables,
  recordDelta,
  recordEmission,
  type TableSize,
} from './store.ts';

/**
 * What a root's graph gained since its last emission (what serialize holds): the subtrees that
 * arrived, in arrival order (children before parents), and the ids' net change. `whole` when
 * serialize's base is not known to this process (no emission since activation) or a whole graph
 * arrived: the next emission is then a whole table.
 */
interface Unsent {
  nodes: DeltaNode[];
  added: Set<string>;
  removed: Set<string>;
  whole: boolean;
}

/** A whole graph asked for and still not come after this long is asked for again. */
const ASK_AGAIN_MS = 30_000;

function nothingUnsent(): Unsent {
  return { nodes: [], added: new Set(), removed: new Set(), whole: false };
}

interface Pending {
  since: number;
  entries: Map<string, Entry>;
  latest: Entry;
}

export const createCanonical: StageFactory = ({ config, redis, keys, log }) => {
  const store = canonicalStore(keys);
  const conflateMs = config.ATLAS_CONFLATE_MS;
  let emitted = new Map<string, Emitted>();
  const pending = new Map<string, Pending>();
  let held = new DeltaReceiver();
  const sizes = new Map<string, TableSize>();
  /**
   * When each root's whole graph was asked for, until it comes: asked once, not per delta, but
   * again after ASK_AGAIN_MS (a job that failed, or no transitive to run it, must not leave the
   * root without updates silently).
   */
  const asked = new Map<string, number>();
  let transitiveJobs: Queue | undefined;
  const unsent = new Map<string, Unsent>();
  /** Members attached in each root's last emitted graph (what serialize holds), to name those that left. */
  const emittedAttached = new Map<string, Set<string>>();

  /** The held graphs and emissions as last committed (on activation, after a failed step). */
  async function load(): Promise<void> {
    emitted = await loadEmitted(redis, store);
    pending.clear();
    asked.clear();
    held = new DeltaReceiver();
    sizes.clear();
    unsent.clear();
    emittedAttached.clear();
    const tables = await loadTables(redis, store, (root, err) =>
      log.error(
        { root, err: err.message },
        'canonical: stored graph damaged; a whole graph will be asked for',
      ),
    );
    for (const [root, { delta, size }] of tables) {
      held.apply(delta);
      sizes.set(root, size);
      // Holding what was last emitted, the next emission is a delta from it; else a whole table.
      if (emitted.get(root)?.hash !== delta.hash) continue;
      unsent.set(root, nothingUnsent());
      emittedAttached.set(root, new Set(delta.attached.map(([member]) => member)));
    }
  }

  /** Applies and records the deltas of `inputs` (one root) in transitive's order, then settles `latest`. */
  async function settle(step: Step, latest: Entry, inputs: Iterable<Entry>): Promise<void> {
    const root = latest.text('root');
    const ordered = [...inputs].sort((a, b) => Number(a.text('out_seq')) - Number(b.text('out_seq')));
    for (const e of ordered) await receive(step, e.json<GraphDelta>('delta'));
    for (const e of ordered) step.ack(e);
    const hash = latest.text('hash');
    // Lacking a base, the graph is not held: the whole one asked for comes as a later input.
    if (held.hashOf(root) !== hash) return;
    const eventSeq = Number(latest.text('event_seq'));
    const last = emitted.get(root);
    // A rebuild's or resend's graph is as of the newest event already seen: compared, not passed over as old.
    const newer =
      latest.has('rebuild') || latest.has('resend')
        ? eventSeq >= (last?.event_seq ?? 0)
        : eventSeq > (last?.event_seq ?? 0);
    if (!last || (last.hash !== hash && newer)) emit(step, root, eventSeq, latest);
  }

  /** One delta into the held table and its store; a missing base asks for the whole graph. */
  async function receive(step: Step, delta: GraphDelta): Promise<void> {
    const root = delta.root_id;
    try {
      held.apply(delta);
    } catch (err) {
      if (!(err instanceof MissingSubtreeError)) throw err;
      await askWhole(root, err);
      return;
    }
    if (delta.base === '') asked.delete(root);
    gained(delta);
    const size = sizes.get(root) ?? { written: 0, live: 0 };
    sizes.set(
      root,
      recordDelta(step, store, delta, held.head(root)!, size, () => held.whole(root)),
    );
  }

  function gained(delta: GraphDelta): void {
    // No record: nothing emitted since activation, serialize's base unknown here.
    const u = unsent.get(delta.root_id) ?? { ...nothingUnsent(), whole: true };
    unsent.set(delta.root_id, u);
    if (delta.base === '') u.whole = true;
    if (u.whole) return;
    for (const n of delta.nodes) u.nodes.push(n);
    for (const id of delta.ids_added) if (!u.removed.delete(id)) u.added.add(id);
    for (const id of delta.ids_removed) if (!u.added.delete(id)) u.removed.add(id);
  }

  /**
   * The graph held for `root` as a delta from the last one emitted. Lacking that base here (the
   * first emission since activation, a whole graph received), a whole table. It lists every
   * attachment, changed or not (one [member, hash] pair each): so each entry names its whole graph, which
   * serialize needs to rebuild it from the store (`graphAt`).
   */
  function outgoing(root: string): GraphDelta {
    const u = unsent.get(root);
    const base = emitted.get(root)?.hash ?? '';
    const before = emittedAttached.get(root);
    if (u?.whole !== false || base === '' || !before) return held.whole(root);
    const head = held.head(root)!;
    const now = new Set(head.attached.map(([member]) => member));
    const seen = new Set<string>();
    // Subtrees that arrived and left again before this emission are not sent.
    const nodes = u.nodes.filter((n) => !seen.has(n[0]) && seen.add(n[0]) && held.has(root, n[0]));
    return {
      root_id: root,
      hash: head.hash,
      base,
      own: head.own,
      attached: head.attached,
      detached: [...before].filter((member) => !now.has(member)),
      expanded_nodes: head.expanded_nodes,
      ids_added: [...u.added].sort(compareIds),
      ids_removed: [...u.removed].sort(compareIds),
      nodes,
      meta: head.meta,
    };
  }

  async function askWhole(root: string, err: MissingSubtreeError): Promise<void> {
    if (Date.now() - (asked.get(root) ?? Number.NEGATIVE_INFINITY) < ASK_AGAIN_MS) return;
    // Asked before the step commits: a crash in between asks again at worst (a whole graph is idempotent).
    transitiveJobs ??= controlQueue(redis, keys, 'transitive');
    await enqueue(transitiveJobs, 'resend', { root });
    asked.set(root, Date.now());
    metrics.graphResends.inc({ stage: 'canonical' });
    log.error(
      { root, err: err.message },
      'canonical: a graph delta builds on what this stage does not hold (lost or damaged state); asked transitive for the whole graph, nothing is emitted for this root until it comes',
    );
  }

  /**
   * One update of `root` (the graph held, as a delta from the last one emitted), numbered after
   * the last one emitted, recorded with it: sent for `input` (the runtime carries its context),
   * or, for an operator's job no request caused (a republish), with a fresh context.
   */
  function emit(step: Step, root: string, eventSeq: number, input: Entry | 'operator'): void {
    const delta = outgoing(root);
    const next: Emitted = {
      hash: delta.hash,
      sequence_number: (emitted.get(root)?.sequence_number ?? 0) + 1,
      event_seq: eventSeq,
    };
    const fields = {
      root,
      sequence_number: String(next.sequence_number),
      event_seq: String(eventSeq),
      hash: delta.hash,
      delta: JSON.stringify(delta),
    };
    if (input !== 'operator') step.sendFor(input, fields);
    else step.send({ ...fields, received_at: String(Date.now()), traceparent: freshTraceparent() });
    recordEmission(step, store, root, next);
    emitted.set(root, next);
    unsent.set(root, nothingUnsent());
    emittedAttached.set(root, new Set(delta.attached.map(([member]) => member)));
  }

  function hold(entry: Entry): void {
    const root = entry.text('root');
    const p = pending.get(root) ?? { since: Date.now(), entries: new Map(), latest: entry };
    p.entries.set(entry.id, entry);
    if (Number(entry.text('out_seq')) >= Number(p.latest.text('out_seq'))) p.latest = entry;
    pending.set(root, p);
  }

  return {
    name: 'canonical',
    input: streams.transitive,
    output: streams.canonical,
    singleton: true,
    // A root's graphs in the order transitive made them, whatever order they are read in (a
    // re-read of pending entries comes late): each is a delta from the one before. With
    // conflation, inputs are held unacknowledged across steps, which an order checkpoint would
    // pass over; there a root's held inputs are applied in `out_seq` order when its window closes.
    ...(conflateMs > 0 ? {} : { order: { seq: 'out_seq' } }),
    async activate() {
      await load();
      return undefined;
    },
    reset: load,
    async stop() {
      await transitiveJobs?.close();
    },
    jobs: {
      /** The last emitted graph of a root (or of all) again, as a new update. */
      async republish(data, ctx) {
        const roots = data.all === true ? [...emitted.keys()] : [String(data.root)];
        const missing = roots.filter((r) => !emitted.has(r));
        if (missing.length > 0) throw new JobRefused(`no graph emitted yet for root ${missing.join(', ')}`);
        const unheld = roots.filter((r) => held.hashOf(r) !== emitted.get(r)!.hash);
        if (unheld.length > 0)
          throw new JobRefused(
            `the graph held for root ${unheld.join(', ')} is not the one last emitted (lost state: atlas rebuild canonical asks transitive for it)`,
          );
        const result = {
          summary: `republished ${roots.length} root graph(s) as new updates`,
          republished: roots.length,
          sequenceNumbers: {} as Record<string, number>,
        };
        await ctx.commit((step) => {
          for (const root of roots) {
            const last = emitted.get(root)!;
            emit(step, root, last.event_seq, 'operator');
            result.sequenceNumbers[root] = last.sequence_number + 1;
          }
        }, result);
        return result;
      },
      /**
       * After canonical's own store was damaged or lost: asks transitive for every root's whole
       * graph; each comes as an input and is emitted if it differs from the last emitted one.
       */
      async rebuild(_data, ctx) {
        transitiveJobs ??= controlQueue(redis, keys, 'transitive');
        const job = await enqueue(transitiveJobs, 'resend', { all: true });
        const result = {
          summary: `canonical asked transitive for every root's whole graph (job ${job.id}); those that differ from the last emitted are emitted as they arrive`,
          job: job.id ?? '',
        };
        await ctx.commit(() => undefined, result);
        return result;
      },
    },
    async handle(entries, step) {
      for (const entry of entries) {
        if (conflateMs > 0) hold(entry);
        else await settle(step, entry, [entry]);
      }
    },
    ...(conflateMs > 0
      ? {
          tick: {
            everyMs: Math.max(5, Math.floor(conflateMs / 4)),
            async run(step: Step) {
              const now = Date.now();
              for (const [root, p] of pending) {
                if (now - p.since < conflateMs) continue;
                await settle(step, p.latest, p.entries.values());
                pending.delete(root);
              }
            },
          },
        }
      : {}),
  };
};
