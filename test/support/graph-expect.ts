/**
 * The end-state checks of the graph tests: what the pipeline shows and emitted after an event
 * sequence, against what the in-test reference expects of that sequence.
 */
import { expect } from 'vitest';
import { dense, type GraphPipeline, strictlyIncreasing } from './graph-pipeline.ts';
import type { Expectation } from './graph-scenario.ts';

export interface EndStateOptions {
  /**
   * Per-event emission: each root's canonical stream holds exactly 1..N with N = the per-event
   * count (false under conflation, where only density and the final graph are checked).
   */
  perEvent?: boolean;
}

/**
 * - `atlas canonical show --json` = the expected final graph of every root;
 * - the canonical stream per root: sequence numbers 1..N in order, no repeats, event_seq
 *   strictly increasing, its last graph the shown one; N = the per-event count when asked;
 * - the transitive stream per root: event_seq strictly increasing (no event applied twice);
 * - the DLQ holds exactly the expected conflicts and invalid events (nothing poisoned);
 * - the transitive checkpoint is the expected topology.
 * Returns N per root.
 */
export async function expectEndState(
  p: GraphPipeline,
  expected: Expectation,
  opts: EndStateOptions = {},
): Promise<Record<string, number>> {
  const perEvent = opts.perEvent ?? true;
  const emissions = await p.emissions();
  const transitive = await p.transitiveOutputs();
  const counts: Record<string, number> = {};
  for (const root of p.roots) {
    const shown = await p.show(root);
    expect(
      { root_id: shown.root_id, tree: shown.tree, canonical_space_ids: shown.canonical_space_ids },
      `final graph of root ${root}`,
    ).toEqual(expected.finals[root]);

    const list = emissions.get(root) ?? [];
    const numbers = list.map((e) => e.sequence_number);
    expect(numbers, `sequence numbers of root ${root}`).toEqual(dense(list.length));
    if (perEvent) expect(list.length, `emissions of root ${root}`).toBe(expected.emissions[root]);
    expect(shown.sequence_number).toBe(list.length);
    expect(strictlyIncreasing(list.map((e) => e.event_seq)), `event_seq of root ${root}'s emissions`).toBe(
      true,
    );
    expect(list.at(-1)?.hash).toBeDefined();
    expect(list.at(-1)!.graph.canonical_space_ids).toEqual(expected.finals[root]!.canonical_space_ids);
    // Consecutive emissions differ (an unchanged tree is never emitted again).
    for (let i = 1; i < list.length; i++) expect(list[i]!.hash).not.toBe(list[i - 1]!.hash);

    const seqs = transitive.get(root) ?? [];
    expect(strictlyIncreasing(seqs), `event_seq of root ${root}'s transitive outputs`).toBe(true);
    counts[root] = list.length;
  }
  const dlq = (await p.deadLetters()).map((d) => `${d.stage} ${d.reason} ${d.original.event_id}`);
  expect(dlq.sort(), 'dead letters').toEqual(
    [
      ...expected.invalid.map((id) => `validate invalid_payload ${id}`),
      ...expected.conflicts.map((id) => `transitive space_conflict ${id}`),
    ].sort(),
  );
  expect(await p.checkpoint(), 'transitive checkpoint').toEqual(expected.state);
  expect(await p.acceptedCount(), 'events accepted').toBe(expected.accepted);
  return counts;
}
