/**
 * The reference cases (shared/fixtures/topology/*.json) through the real stages — ingest,
 * validate, transitive, canonical as `atlas run` processes — posted over HTTP one by one and as
 * one batch, and once more with the stages spread over several processes (two doors with two
 * validate replicas, transitive and canonical on their own). What `atlas canonical show --json`
 * prints must be each root's expected final graph with sequence_number = the per-event emission
 * count, and `{prefix}:canonical` must hold exactly 1..N for the root.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { dense, GraphPipeline } from '../support/graph-pipeline.ts';
import {
  type Envelope,
  expectationOf,
  loadFixtures,
  type TopologyFixture,
} from '../support/graph-scenario.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const fixtures = loadFixtures();
const fx = useRedis('graph-fx');
afterEach(async () => {
  await killChildren();
});

const ALL_STAGES = ['ingest', 'validate', 'transitive', 'canonical'];

/** What a run emitted, per root: [sequence_number, event_seq, hash] in stream order. */
type Emitted = Record<string, Array<[number, number, string]>>;

it('finds the fixture files', () => {
  expect(fixtures.length).toBeGreaterThan(0);
});

describe.each(fixtures.map((f) => [f.name, f] as const))('fixture %s', (_name, fixture) => {
  const runs: Partial<Record<'single' | 'batch', Emitted>> = {};

  it('the test reference agrees with the fixture', () => {
    const expected = expectationOf(fixture.roots, fixture.events);
    for (const root of fixture.roots) {
      expect(expected.finals[root]).toEqual(fixture.expected[root]!.final);
      expect(expected.emissions[root]).toBe(fixture.expected[root]!.emissions_per_event_mode);
    }
  });

  for (const mode of ['single', 'batch'] as const) {
    it(`${mode === 'single' ? 'one POST /events per event' : 'one POST /events/batch'}: final graphs, sequence numbers and the canonical stream are as expected`, async () => {
      const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-fx').prefix, fixture.roots);
      await p.spawn('all', ALL_STAGES);
      await p.post(fixture.events, { mode });
      await p.waitIdle();
      runs[mode] = await expectFixtureResult(p, fixture);
      await p.stop();
    }, 120_000);
  }

  it('spread over several processes (two doors + validate replicas, transitive and canonical apart): identical emissions', async () => {
    const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-fx').prefix, fixture.roots);
    await Promise.all([
      p.spawn('door-a', ['ingest', 'validate']),
      p.spawn('door-b', ['ingest', 'validate']),
      p.spawn('transitive', ['transitive']),
      p.spawn('canonical', ['canonical']),
    ]);
    // Events alternate between the doors; each waits for the previous answer, so seq order holds.
    await p.post(fixture.events, { mode: 'single' });
    await p.waitIdle();
    const emitted = await expectFixtureResult(p, fixture);
    // Both validate replicas read from the group (what they write, transitive re-sequences).
    const validators = await fx.redis.xinfo('CONSUMERS', p.keys.stream('ingest'), 'validate');
    expect((validators as unknown[]).length).toBe(2);
    for (const mode of ['single', 'batch'] as const) if (runs[mode]) expect(emitted).toEqual(runs[mode]);
    await p.stop();
  }, 120_000);
});

/** The checks every run of a fixture must pass; returns what it emitted. */
async function expectFixtureResult(p: GraphPipeline, fixture: TopologyFixture): Promise<Emitted> {
  const reference = expectationOf(fixture.roots, fixture.events);
  const emissions = await p.emissions();
  const bySeq = acceptedInOrder(fixture.events);
  const out: Emitted = {};
  let total = 0;
  for (const root of fixture.roots) {
    const { final, emissions_per_event_mode: n } = fixture.expected[root]!;
    const shown = await p.show(root);
    expect({
      root_id: shown.root_id,
      tree: shown.tree,
      canonical_space_ids: shown.canonical_space_ids,
    }).toEqual(final);
    expect(shown.sequence_number).toBe(n);

    const list = emissions.get(root)!;
    expect(list.map((e) => e.sequence_number)).toEqual(dense(n));
    // Each emission carries the metadata of the event it includes last.
    for (const e of list) {
      const meta = (bySeq[e.event_seq - 1]!.payload as { meta: Record<string, unknown> }).meta;
      expect(e.graph.meta.cursor).toBe(meta.cursor);
      expect(e.graph.meta.block_number).toBe(String(meta.block_number));
    }
    expect(list.at(-1)!.graph.canonical_space_ids).toEqual(final.canonical_space_ids);
    out[root] = list.map((e) => [e.sequence_number, e.event_seq, e.hash]);
    total += list.length;
  }
  // Nothing else in the stream: every entry is one of the roots' emissions.
  expect(await fx.redis.xlen(p.keys.stream('canonical'))).toBe(total);
  const dlq = (await p.deadLetters()).map((d) => `${d.stage} ${d.reason} ${d.original.event_id}`);
  expect(dlq.sort()).toEqual(
    [
      ...reference.invalid.map((id) => `validate invalid_payload ${id}`),
      ...reference.conflicts.map((id) => `transitive space_conflict ${id}`),
    ].sort(),
  );
  return out;
}

/** Envelopes in the order they get their global seq (a repeated event_id gets none). */
function acceptedInOrder(events: Envelope[]): Envelope[] {
  const seen = new Set<string>();
  return events.filter((e) => !seen.has(e.event_id) && seen.add(e.event_id));
}
