/**
 * The active emit frozen (SIGSTOP) past its lease, again and again, under load, with a hot
 * standby: the standby takes over and publishes; the frozen one is thawed (SIGCONT) holding a
 * batch it read before the freeze. Kafka must refuse that batch (the standby's producer
 * initialisation fenced the frozen one's epoch), and the thawed instance steps down.
 *
 * At the end, per root: sequence numbers exactly 1..N in topic order (no duplicate, none out of
 * order), N = what per-event emission makes of the posted events = the canonical stage's count,
 * the last update the reference's final graph; nothing dead-lettered, no process crashed.
 */
import { expect, it } from 'vitest';
import { createTopic, decodeTopic, readTopic, topicCounter, waitForCount } from '../support/e2e-kafka.ts';
import { useSharedBroker } from '../support/e2e-lock.ts';
import { fencings, type Pause, pauseRepeatedly, postSteadily, sequenceFaults } from '../support/e2e-pause.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, emissionCauses, expectEveryUpdateOnce } from '../support/e2e-scenario.ts';
import { prng } from '../support/prng.ts';
import { useRedis } from '../support/redis.ts';

const SEED = 20_261_129;
const PAUSES = 4;
const LEASE_MS = 1200;
const EVENTS_PER_S = 40;

const fx = useRedis('e2e-pause');
const topic = useSharedBroker('pause');

it(`the active emit frozen past its lease ${PAUSES} times under load, a hot standby taking over: every update exactly once, in order`, async () => {
  const pool = churnScenario({ seed: SEED, events: 2500, roots: 2, tag: fx.prefix });
  const roots = pool.roots;
  await createTopic(topic, 3);
  const env = { ATLAS_LEASE_MS: String(LEASE_MS), ATLAS_BATCH_SIZE: '10' };
  const p = new E2EPipeline(fx.redis, { prefix: fx.prefix, topic, roots, env });
  await p.run('upstream', ['ingest', 'validate', 'transitive', 'canonical', 'serialize']);
  await p.run('emit-a', ['emit']);
  await p.run('emit-b', ['emit']);

  const poster = postSteadily((e) => p.post([e]), pool.events, EVENTS_PER_S);
  const counter = await topicCounter(topic);
  let pauses: Pause[] = [];
  try {
    const progress = () => counter.count();
    pauses = await pauseRepeatedly(p, 'emit', {
      times: PAUSES,
      leaseMs: LEASE_MS,
      progress,
      rand: prng(SEED),
    });
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${p.output()}`);
  } finally {
    await counter.close();
    await poster.stop();
  }

  const events = pool.events.slice(0, poster.posted());
  const causes = emissionCauses(roots, events);
  const total = roots.reduce((sum, r) => sum + causes.get(r)!.length, 0);
  await p.waitDrained(60_000);
  const counted = await waitForCount(topic, total, 60_000).catch((err: Error) => err.message);
  const perRoot = await decodeTopic(await readTopic(topic));
  const faults = sequenceFaults(perRoot);
  const fenced = fencings(p, ['emit-a', 'emit-b']);
  console.log(
    `emit-pause: ${events.length} events, ${total} messages expected; ${pauses.length} pauses ` +
      `(${pauses.map((x) => `${x.paused}→${x.successor} ${x.ms.toFixed(0)} ms`).join(', ')}); ` +
      `${faults.duplicates} duplicates, ${faults.outOfOrder} out of order; fenced: ${fenced.join(' | ')}`,
  );
  expect(faults).toEqual({ duplicates: 0, outOfOrder: 0 });
  // A thawed instance woke up with a batch and was refused at least once (by Kafka or Redis).
  expect(fenced.length).toBeGreaterThan(0);
  expect(counted).toBeUndefined();
  expectEveryUpdateOnce(roots, events, perRoot, await p.canonicalSequences());
  expect(await p.deadLetters()).toEqual([]);
  expect(p.crashes()).toEqual([]);
  await p.stop();
}, 240_000);
