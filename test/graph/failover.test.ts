/**
 * Hot standbys: two transitive and two canonical processes, one of each active (holding the
 * stage's lease), the other waiting. Mid-stream, kill -9 of the active transitive process, later
 * of the active canonical one: each standby takes over once the dead holder's lease lapses
 * (ATLAS_LEASE_MS=1000), takes over its pending entries and carries on. The end state is the
 * reference's, sequence numbers are dense and never repeated, every event was applied once,
 * and the DLQ holds nothing but the sequence's conflicts and invalid event.
 */
import { afterEach, expect, it } from 'vitest';
import { eventually, stays } from '../support/eventually.ts';
import { expectEndState } from '../support/graph-expect.ts';
import { GraphPipeline } from '../support/graph-pipeline.ts';
import { expectationOf, generateScenario } from '../support/graph-scenario.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('graph-failover');
afterEach(async () => {
  await killChildren();
});

const LEASE_MS = 1000;
/** How often a standby asks for the lease (lease.ts: a fifth of the lease). */
const STANDBY_POLL_MS = LEASE_MS / 5;
/** Scheduling slack: a starved standby sees the lapse late (the machine has 2 cores). */
const SLACK_MS = 2000;

const scenario = generateScenario({ seed: 2, events: 400, tag: 'failover' });
const expected = expectationOf(scenario.roots, scenario.events);
const totalOutputs = Object.values(expected.emissions).reduce((a, b) => a + b, 0);

it('the standbys take over within the lease; graphs, sequence numbers and the DLQ are as if nothing happened', async () => {
  const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-failover').prefix, scenario.roots, {
    ATLAS_LEASE_MS: String(LEASE_MS),
    ATLAS_BATCH_SIZE: '50',
    LOG_LEVEL: 'info',
  });
  await Promise.all([
    p.spawn('door', ['ingest', 'validate'], { LOG_LEVEL: 'warn' }),
    p.spawn('validate', ['validate'], { LOG_LEVEL: 'warn' }),
    p.spawn('transitive-1', ['transitive']),
    p.spawn('canonical-1', ['canonical']),
  ]);
  await eventually(async () => (await p.leaseHolder('transitive')) === 'transitive-1', 60_000);
  await eventually(async () => (await p.leaseHolder('canonical')) === 'canonical-1', 60_000);
  const standbys = [p.spawn('transitive-2', ['transitive']), p.spawn('canonical-2', ['canonical'])];
  for (const child of await Promise.all(standbys))
    await child.waitForLog('waiting for the lease (hot standby)', 60_000);

  // Idle, the active instances keep their leases (renewals must not wait behind a blocking read:
  // ATLAS_BLOCK_MS is left at its default, the length of the lease).
  const tokens = async () => [
    await fx.redis.get(p.keys.of('lease', 'transitive')),
    await fx.redis.get(p.keys.of('lease', 'canonical')),
  ];
  const idleTokens = await tokens();
  await stays(async () => {
    expect(await tokens()).toEqual(idleTokens);
  }, 3 * LEASE_MS);

  const posting = p.post(scenario.events, {
    mode: 'batch',
    batchSize: 8,
    holdBack: p.behind({ events: 40, outputs: 12 }),
  });
  let failed: unknown;
  posting.catch((err: unknown) => {
    failed = err;
  });
  const progressed = async (what: () => Promise<number>, target: number) =>
    eventually(
      async () => {
        if (failed) throw failed;
        const done = await what();
        if (done < target) throw new Error(`at ${done}, waiting for ${target}: ${await p.notIdle()}`);
        return done;
      },
      60_000,
      5,
    );

  // The active transitive process dies a third of the way in.
  await progressed(() => p.transitiveDone(), Math.floor(expected.accepted / 3));
  const t = await failover(p, 'transitive', ['transitive-1', 'transitive-2']);
  const afterT = await p.transitiveDone();
  await progressed(() => p.transitiveDone(), afterT + 1);

  // The active canonical process dies two thirds of the way in.
  await progressed(() => p.canonicalDone(), Math.floor((totalOutputs * 2) / 3));
  const c = await failover(p, 'canonical', ['canonical-1', 'canonical-2']);
  const afterC = await p.canonicalDone();
  await progressed(() => p.canonicalDone(), afterC + 1);

  await posting;
  await p.waitIdle();
  await expectEndState(p, expected);

  for (const f of [t, c]) {
    // The lease lapsed at most LEASE_MS after the kill; the standby took it after it lapsed (never
    // while the dead holder's lease stood) and saw the lapse at one of its next polls.
    expect(f.leaseLeftMs).toBeLessThanOrEqual(LEASE_MS);
    expect(f.takeoverMs).toBeGreaterThanOrEqual(f.leaseLeftMs - 50);
    expect(f.takeoverMs, `${f.stage} takeover`).toBeLessThanOrEqual(
      f.leaseLeftMs + STANDBY_POLL_MS + SLACK_MS,
    );
    expect(f.takeoverMs).toBeLessThanOrEqual(LEASE_MS + STANDBY_POLL_MS + SLACK_MS);
    // A new fencing token: the dead holder's could never commit again.
    expect(f.newToken).toBeGreaterThan(f.oldToken);
  }
  await p.stop();
}, 180_000);

interface Failover {
  stage: string;
  /** The lease's time to live when the active holder died. */
  leaseLeftMs: number;
  /** From the kill until the standby held the lease. */
  takeoverMs: number;
  oldToken: number;
  newToken: number;
}

/**
 * kill -9 of whichever of the pair is active (best effort: while it has entries in flight);
 * times the other's takeover.
 */
async function failover(
  p: GraphPipeline,
  stage: 'transitive' | 'canonical',
  pair: [string, string],
): Promise<Failover> {
  const active = await p.leaseHolder(stage);
  expect(pair).toContain(active);
  const standby = pair.find((name) => name !== active)!;
  const lease = p.keys.of('lease', stage);
  const oldToken = Number(await fx.redis.get(lease));
  await eventually(async () => (await p.pending(stage)) > 0, 2000, 1).catch(() => {});
  await p.kill9(active!);
  const killed = performance.now();
  const leaseLeftMs = Math.max(0, await fx.redis.pttl(lease));
  await eventually(async () => (await p.leaseHolder(stage)) === standby, 10_000, 5);
  const takeoverMs = performance.now() - killed;
  const newToken = Number(await fx.redis.get(lease));
  return { stage, leaseLeftMs, takeoverMs, oldToken, newToken };
}
