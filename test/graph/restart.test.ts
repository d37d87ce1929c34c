/**
 * kill -9 of the stateful stages while events flow. A seeded sequence of 400 events over 40
 * spaces and 3 roots (creations, extensions, revocations, subtopics, duplicates, conflicts, an
 * invalid event) is posted in batches, held back so that it stays a few batches ahead of the
 * stage under test; meanwhile the transitive (then the canonical) process is killed at seeded
 * points — when possible while it holds entries it has read but not committed — and started
 * again (two validate replicas feed the transitive stage, so it also re-sequences). In the end the graphs are the reference's, sequence numbers are dense 1..N,
 * and N is exactly what a from-scratch per-event replay emits: the canonical stage decides each
 * emission against the last *emitted* graph it committed, and a restarted transitive stage that
 * re-sends a root's unchanged graph is a no-op there — so restarts cannot change N.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { delay, eventually } from '../support/eventually.ts';
import { expectEndState } from '../support/graph-expect.ts';
import { GraphPipeline } from '../support/graph-pipeline.ts';
import { expectationOf, generateScenario } from '../support/graph-scenario.ts';
import { prng } from '../support/prng.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('graph-restart');
afterEach(async () => {
  await killChildren();
});

const KILLS = 4;
const ENV = { ATLAS_LEASE_MS: '1000', ATLAS_BATCH_SIZE: '50' };

/** `count` increasing points, one in each of `count` equal slices of [10%, 90%] of `total`. */
function killPoints(seed: number, count: number, total: number): number[] {
  const rand = prng(seed);
  const lo = total * 0.1;
  const slice = (total * 0.8) / count;
  return Array.from({ length: count }, (_, i) => Math.floor(lo + slice * (i + rand())));
}

describe.each([
  { stage: 'transitive' as const, seed: 6 },
  { stage: 'canonical' as const, seed: 10 },
])('kill -9 of the $stage process (seed $seed)', ({ stage, seed }) => {
  const scenario = generateScenario({ seed, events: 400, tag: `restart-${stage}` });
  const expected = expectationOf(scenario.roots, scenario.events);

  it(`${KILLS} times mid-stream: final graphs as expected, sequence numbers dense 1..N, N = the per-event count`, async () => {
    const p = new GraphPipeline(
      fx.redis,
      fx.freshPrefix(`graph-restart-${stage}`).prefix,
      scenario.roots,
      ENV,
    );
    await Promise.all([
      p.spawn('door', ['ingest', 'validate']),
      p.spawn('validate', ['validate']), // a second replica: the transitive stage re-sequences
      p.spawn('transitive', ['transitive']),
      p.spawn('canonical', ['canonical']),
    ]);
    // Progress of the stage under test, and where its kills happen.
    const totalWork =
      stage === 'transitive'
        ? expected.accepted
        : Object.values(expected.emissions).reduce((a, b) => a + b, 0);
    const progress = () => (stage === 'transitive' ? p.transitiveDone() : p.canonicalDone());
    const points = killPoints(seed * 7919, KILLS, totalWork);
    const rand = prng(seed * 31);

    // Posting stays a few batches ahead of the stage under test, so each kill finds work in flight
    // and each new instance gets more.
    const holdBack = p.behind(stage === 'transitive' ? { events: 40 } : { events: 40, outputs: 12 });
    const posting = p.post(scenario.events, { mode: 'batch', batchSize: 8, holdBack });
    let failed: unknown;
    posting.catch((err: unknown) => {
      failed = err;
    });
    const killedAt: number[] = [];
    let floor = 0;
    for (const point of points) {
      // Past the point, and past where the previous instance stopped (the new one did work).
      const reached = await eventually(
        async () => {
          if (failed) throw failed;
          const done = await progress();
          const target = Math.max(point, floor + 1);
          if (done < target)
            throw new Error(
              `${stage} has done ${done} of ${totalWork}, waiting for ${target}: ${await p.notIdle()}`,
            );
          return done;
        },
        60_000,
        5,
      );
      // Best effort: kill while the stage holds entries it read and has not committed.
      await eventually(async () => (await p.pending(stage)) > 0, 2000, 1).catch(() => {});
      await delay(Math.floor(rand() * 3));
      await p.kill9(stage);
      floor = await progress();
      killedAt.push(reached);
      await p.restart(stage);
    }
    await posting;
    await p.waitIdle();

    expect(killedAt).toHaveLength(KILLS);
    expect(Math.max(...killedAt)).toBeLessThan(totalWork);
    await expectEndState(p, expected);
    await p.stop();
  }, 180_000);
});
