/**
 * Hot standbys of the two stateful singletons, and their active instances frozen (SIGSTOP) past
 * the lease mid-stream — transitive, canonical, transitive, canonical: each time the standby
 * takes over and works, then the frozen one is thawed (SIGCONT) holding the batch it had read and
 * the state it had built. The lease fence in commit.lua must refuse its step (it steps down), so
 * every event is applied once and every emission written once: the end state is the reference's,
 * sequence numbers dense, event_seq strictly increasing per root, nothing poisoned.
 */
import { afterEach, expect, it } from 'vitest';
import { fencings, type Pause, pausePastLease } from '../support/e2e-pause.ts';
import { eventually } from '../support/eventually.ts';
import { expectEndState } from '../support/graph-expect.ts';
import { GraphPipeline } from '../support/graph-pipeline.ts';
import { expectationOf, generateScenario } from '../support/graph-scenario.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('graph-pause');
afterEach(async () => {
  await killChildren();
});

const LEASE_MS = 1000;
const scenario = generateScenario({ seed: 7, events: 400, tag: 'pause' });
const expected = expectationOf(scenario.roots, scenario.events);
const PROCESSES = ['transitive-1', 'transitive-2', 'canonical-1', 'canonical-2'];

it('transitive and canonical frozen past their leases, twice each: every event applied once, every emission once', async () => {
  const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-pause').prefix, scenario.roots, {
    ATLAS_LEASE_MS: String(LEASE_MS),
    ATLAS_BATCH_SIZE: '20',
  });
  await Promise.all([
    p.spawn('door', ['ingest', 'validate']),
    ...PROCESSES.map((name) => p.spawn(name, [name.split('-')[0]!])),
  ]);
  await eventually(async () => (await p.leaseHolder('transitive')) !== null, 60_000);
  await eventually(async () => (await p.leaseHolder('canonical')) !== null, 60_000);

  const posting = p.post(scenario.events, {
    mode: 'batch',
    batchSize: 4,
    holdBack: p.behind({ events: 40, outputs: 12 }),
  });
  const done = { transitive: () => p.transitiveDone(), canonical: () => p.canonicalDone() };
  const pauses: Pause[] = [];
  for (const [i, stage] of (['transitive', 'canonical', 'transitive', 'canonical'] as const).entries()) {
    await eventually(async () => (await p.transitiveDone()) >= ((i + 1) * expected.accepted) / 6, 60_000, 10);
    const before = await done[stage]();
    // Frozen until the successor has committed work of its own (or there is none left).
    const worked = async () => (await done[stage]()) > before || (await p.notIdle()) === null;
    const whilePaused = () => eventually(worked, 30_000, 10);
    pauses.push(await pausePastLease(p, stage, { minMs: LEASE_MS + 300, whilePaused }));
  }
  await posting;
  await p.waitIdle();
  await expectEndState(p, expected);
  const fenced = fencings(p, PROCESSES);
  console.log(
    `graph-pause: ${pauses.map((x) => `${x.paused}→${x.successor} ${x.ms.toFixed(0)} ms`).join(', ')}; fenced: ${fenced.join(' | ')}`,
  );
  // A thawed instance woke up with a batch and was refused at least once.
  expect(fenced.length).toBeGreaterThan(0);
  expect(p.crashes()).toEqual([]);
  await p.stop();
}, 180_000);
