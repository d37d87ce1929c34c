/**
 * The chaos run's verdict, counted rather than asserted at the first difference: per root, what
 * Kafka holds against what the naive reference says it must hold, and every accepted event in
 * the validated stream or the DLQ.
 */
import type { DeadLetter } from '../../pipeline/dlq.ts';
import type { RootStream } from '../support/e2e-kafka.ts';
import { emissionCauses, expectedMeta } from '../support/e2e-scenario.ts';
import type { Envelope } from '../support/events.ts';
import { expectationOf } from '../support/graph-scenario.ts';

export interface RootVerdict {
  root: string;
  /** Messages the reference says the root must get (sequence numbers 1..expected). */
  expected: number;
  /** Messages in the topic for the root. */
  published: number;
  /** Sequence numbers in 1..expected missing from the topic. */
  lost: number;
  /** Messages beyond the first with the same sequence number. */
  duplicated: number;
  /** Adjacent messages (publication order) whose sequence number goes down. */
  outOfOrder: number;
  /** Sequence numbers above `expected`. */
  unexpected: number;
  /** Messages whose meta is not that of the event behind them (an update missing earlier shifts the rest). */
  wrongMeta: number;
  /** The first sequence number whose meta is wrong (null when none is). */
  firstWrongMeta: number | null;
  /** The last update is the reference's final graph. */
  finalGraphOk: boolean;
}

export interface Verdict {
  roots: RootVerdict[];
  lost: number;
  duplicated: number;
  outOfOrder: number;
  wrongMeta: number;
  /** Accepted events found neither in `{prefix}:validated` nor in the DLQ. */
  missingEvents: string[];
  deadLetters: Record<string, number>;
  violations: string[];
}

/** Counts of each sequence number of a root, and how often the order goes down. */
function sequenceCounts(seqs: number[]): { counts: Map<number, number>; descents: number } {
  const counts = new Map<number, number>();
  let descents = 0;
  seqs.forEach((s, i) => {
    counts.set(s, (counts.get(s) ?? 0) + 1);
    if (i > 0 && s < seqs[i - 1]!) descents++;
  });
  return { counts, descents };
}

export function verifyRoot(
  root: string,
  events: Envelope[],
  causes: number[],
  final: unknown,
  stream: RootStream | undefined,
): RootVerdict {
  const updates = stream?.updates ?? [];
  const seqs = updates.map((u) => Number(u.sequence_number));
  const { counts, descents } = sequenceCounts(seqs);
  const expected = causes.length;
  let lost = 0;
  for (let n = 1; n <= expected; n++) if (!counts.has(n)) lost++;
  const duplicated = [...counts.values()].reduce((sum, c) => sum + c - 1, 0);
  const unexpected = seqs.filter((s) => s < 1 || s > expected).length;
  const wrong = updates.filter((u) => {
    const cause = events[causes[Number(u.sequence_number) - 1] ?? -1];
    return !cause || JSON.stringify(u.meta) !== JSON.stringify(expectedMeta(cause));
  });
  const wrongMeta = wrong.length;
  const firstWrongMeta = wrong.length === 0 ? null : Math.min(...wrong.map((u) => Number(u.sequence_number)));
  const last = updates.at(-1);
  const shown = last && {
    root_id: last.root_id,
    tree: last.tree,
    canonical_space_ids: last.canonical_space_ids,
  };
  const finalGraphOk = JSON.stringify(shown ?? null) === JSON.stringify(final);
  return {
    root,
    expected,
    published: updates.length,
    lost,
    duplicated,
    outOfOrder: descents,
    unexpected,
    wrongMeta,
    firstWrongMeta,
    finalGraphOk,
  };
}

export function verify(
  roots: string[],
  events: Envelope[],
  perRoot: Map<string, RootStream>,
  validatedIds: Set<string>,
  deadLetters: DeadLetter[],
): Verdict {
  const causes = emissionCauses(roots, events);
  const { finals } = expectationOf(roots, events);
  const verdicts = roots.map((r) => verifyRoot(r, events, causes.get(r)!, finals[r], perRoot.get(r)));
  const dead = new Set(deadLetters.map((d) => d.original.event_id));
  const missingEvents = [...new Set(events.map((e) => e.event_id))].filter(
    (id) => !validatedIds.has(id) && !dead.has(id),
  );
  const byReason: Record<string, number> = {};
  for (const d of deadLetters)
    byReason[`${d.stage}:${d.reason}`] = (byReason[`${d.stage}:${d.reason}`] ?? 0) + 1;
  const sum = (f: (v: RootVerdict) => number) => verdicts.reduce((s, v) => s + f(v), 0);
  const violations: string[] = [];
  for (const v of verdicts) {
    const wrong = [
      v.lost && `${v.lost} lost`,
      v.duplicated && `${v.duplicated} duplicated`,
      v.outOfOrder && `${v.outOfOrder} out of order`,
      v.unexpected && `${v.unexpected} beyond ${v.expected}`,
      v.wrongMeta && `${v.wrongMeta} with the wrong meta (from #${v.firstWrongMeta})`,
      !v.finalGraphOk && 'final graph differs from the reference',
    ].filter(Boolean);
    if (wrong.length > 0) violations.push(`root ${v.root}: ${wrong.join(', ')}`);
  }
  if (missingEvents.length > 0)
    violations.push(`${missingEvents.length} accepted events neither validated nor dead-lettered`);
  return {
    roots: verdicts,
    lost: sum((v) => v.lost),
    duplicated: sum((v) => v.duplicated),
    outOfOrder: sum((v) => v.outOfOrder),
    wrongMeta: sum((v) => v.wrongMeta),
    missingEvents,
    deadLetters: byReason,
    violations,
  };
}

/**
 * After `atlas recover` and a replay of the source from its start: per root, the updates of the
 * events before the loss (1..n), then those of the replay (n+1..n+m, from a fresh state), each
 * with its cause's meta, and the last one the reference's final graph. Returns what is wrong.
 */
export function verifyAcrossRecovery(
  roots: string[],
  before: Envelope[],
  replay: Envelope[],
  perRoot: Map<string, RootStream>,
): string[] {
  const first = emissionCauses(roots, before);
  const second = emissionCauses(roots, replay);
  const { finals } = expectationOf(roots, replay);
  const wrong: string[] = [];
  for (const root of roots) {
    const updates = perRoot.get(root)?.updates ?? [];
    const n = first.get(root)!.length;
    const causes = [...first.get(root)!.map((i) => before[i]!), ...second.get(root)!.map((i) => replay[i]!)];
    const seqs = updates.map((u) => Number(u.sequence_number));
    if (JSON.stringify(seqs) !== JSON.stringify(causes.map((_, i) => i + 1)))
      wrong.push(
        `root ${root}: sequence numbers ${describeRun(seqs)}, expected 1..${causes.length} (${n} before the loss)`,
      );
    const metaOff = updates.filter(
      (u) =>
        JSON.stringify(u.meta) !==
        JSON.stringify(expectedMeta(causes[Number(u.sequence_number) - 1] ?? before[0]!)),
    ).length;
    if (metaOff > 0) wrong.push(`root ${root}: ${metaOff} updates with the wrong meta`);
    const last = updates.at(-1);
    const shown = last && {
      root_id: last.root_id,
      tree: last.tree,
      canonical_space_ids: last.canonical_space_ids,
    };
    if (JSON.stringify(shown ?? null) !== JSON.stringify(finals[root]))
      wrong.push(`root ${root}: final graph differs`);
  }
  return wrong;
}

function describeRun(seqs: number[]): string {
  return seqs.length === 0 ? 'none' : `${seqs.length} from ${seqs[0]} to ${seqs.at(-1)}`;
}
