/**
 * Canonical's stored graphs lost (its `canonical:held|table|ids` keys deleted while it was down):
 * transitive goes on sending deltas, which build on what canonical no longer holds. Canonical
 * must not guess — it asks transitive for each such root's whole graph (job `resend`), says so
 * in an error log, skips the root's updates until the whole graph arrives, then goes on; `atlas
 * rebuild canonical` asks for every root's (the quiet ones included). In the end every root's
 * graph is the reference's and its sequence numbers stayed dense; `atlas republish` still works.
 */
import { afterEach, expect, it } from 'vitest';
import { controlQueue } from '../../pipeline/control.ts';
import { canonicalStore } from '../../stages/canonical/store.ts';
import { atlasOn } from '../support/control.ts';
import { eventually } from '../support/eventually.ts';
import { dense, GraphPipeline, strictlyIncreasing } from '../support/graph-pipeline.ts';
import { expectationOf, generateScenario } from '../support/graph-scenario.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('graph-lost-table');
afterEach(async () => {
  await killChildren();
});

/** Waits until transitive's `resend` jobs are all done; returns the roots they were asked for. */
async function resendsDone(p: GraphPipeline): Promise<string[]> {
  const queue = controlQueue(fx.redis, p.keys, 'transitive');
  try {
    return await eventually(async () => {
      const open = await queue.getJobs(['waiting', 'active', 'delayed']);
      if (open.length > 0) throw new Error(`${open.length} resend job(s) not done`);
      const done = await queue.getJobs(['completed', 'failed']);
      for (const job of done) if (job.finishedOn && job.failedReason) throw new Error(job.failedReason);
      return done.map((j) => (j.data.all === true ? '*' : String(j.data.root)));
    }, 60_000);
  } finally {
    await queue.close();
  }
}

it('a delta without its base: canonical asks for the whole graph; final graphs as expected, numbers dense', async () => {
  const scenario = generateScenario({ seed: 21, events: 300, tag: 'lost-table' });
  const expected = expectationOf(scenario.roots, scenario.events);
  const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-lost-table').prefix, scenario.roots, {
    ATLAS_BATCH_SIZE: '20',
  });
  await Promise.all([
    p.spawn('door', ['ingest', 'validate']),
    p.spawn('transitive', ['transitive']),
    p.spawn('canonical', ['canonical']),
  ]);
  const half = Math.floor(scenario.events.length / 2);
  await p.post(scenario.events.slice(0, half), { mode: 'batch', batchSize: 10 });
  await p.waitIdle();
  const before = await p.emissions();

  await p.kill9('canonical');
  const store = canonicalStore(p.keys);
  const lost = [store.held, ...scenario.roots.flatMap((r) => [store.table(r), store.ids(r)])];
  expect(await fx.redis.del(...lost)).toBeGreaterThan(0);
  await p.restart('canonical');
  await p.post(scenario.events.slice(half), { mode: 'batch', batchSize: 10 });
  await p.waitIdle();
  const asked = await resendsDone(p);
  await p.waitIdle();
  // Every root that changed after the loss was asked for, once, by canonical itself.
  expect(asked.length).toBeGreaterThan(0);
  expect(new Set(asked).size).toBe(asked.length);
  expect(p.output()).toContain('asked transitive for the whole graph');

  // The quiet roots too: the operator's way after lost state.
  const rebuild = await atlasOn(p.prefix, ['rebuild', 'canonical', '--json']);
  expect(rebuild.stderr).toBe('');
  expect(rebuild.code).toBe(0);
  expect(await resendsDone(p)).toContain('*');
  await p.waitIdle();

  const emissions = await p.emissions();
  for (const root of scenario.roots) {
    const shown = await p.show(root);
    expect(
      { root_id: shown.root_id, tree: shown.tree, canonical_space_ids: shown.canonical_space_ids },
      `final graph of root ${root}`,
    ).toEqual(expected.finals[root]);
    const list = emissions.get(root) ?? [];
    expect(list.map((e) => e.sequence_number)).toEqual(dense(list.length));
    expect(list.length).toBeGreaterThanOrEqual(before.get(root)?.length ?? 0);
    expect(shown.sequence_number).toBe(list.length);
    expect(strictlyIncreasing(list.map((e) => e.event_seq))).toBe(true);
    for (let i = 1; i < list.length; i++) expect(list[i]!.hash).not.toBe(list[i - 1]!.hash);
  }

  // republish sends the held graph again as a delta from itself: it applies, numbered on.
  const root = scenario.roots[0]!;
  const republish = await atlasOn(p.prefix, ['republish', '--root', root, '--json']);
  expect(republish.code, republish.stderr).toBe(0);
  await p.waitIdle();
  const list = (await p.emissions()).get(root)!;
  const previous = emissions.get(root)!;
  expect(list).toHaveLength(previous.length + 1);
  expect(list.at(-1)!.hash).toBe(previous.at(-1)!.hash);
  expect(list.at(-1)!.graph).toEqual(previous.at(-1)!.graph);
  expect((await p.show(root)).sequence_number).toBe(list.length);

  expect(p.crashes()).toEqual([]);
  await p.stop();
}, 180_000);
