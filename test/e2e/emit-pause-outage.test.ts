/**
 * A pause of the active emit that falls inside a broker outage: the broker goes down under load,
 * the active emit keeps retrying its batch in memory, it is frozen (SIGSTOP) past its lease, the
 * hot standby takes the lease (and retries its activation against the dead broker), the frozen
 * one is thawed while the broker is still down, and then the broker comes back. Both instances
 * now want to publish the same entries; only the lease holder may (the thawed one must neither
 * re-initialise the transactional producer nor send), and every update lands exactly once.
 *
 * The broker: see useOutageBroker (a broker of this test's own by default).
 */
import { expect, it } from 'vitest';
import { createTopic, decodeTopic, readTopic, topicCount, waitForCount } from '../support/e2e-kafka.ts';
import { useOutageBroker } from '../support/e2e-lock.ts';
import { fencings, pausePastLease, postSteadily, sequenceFaults } from '../support/e2e-pause.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, emissionCauses, expectEveryUpdateOnce } from '../support/e2e-scenario.ts';
import { kafkaDown, kafkaUp } from '../support/e2e-services.ts';
import { delay, eventually } from '../support/eventually.ts';
import { useRedis } from '../support/redis.ts';

const LEASE_MS = 1200;
const EVENTS_PER_S = 30;

const { port: PORT, broker: BROKER, topic } = useOutageBroker('pause-outage');
const fx = useRedis('e2e-pause-outage');

it('the active emit frozen past its lease during a broker outage, thawed before the broker is back: every update exactly once', async () => {
  const pool = churnScenario({ seed: 20_261_130, events: 3000, roots: 2, tag: fx.prefix });
  const roots = pool.roots;
  await createTopic(topic, 3, BROKER);
  const env = { KAFKA_BROKER: BROKER, ATLAS_LEASE_MS: String(LEASE_MS), ATLAS_BATCH_SIZE: '50' };
  const p = new E2EPipeline(fx.redis, { prefix: fx.prefix, topic, roots, env });
  await p.run('upstream', ['ingest', 'validate', 'transitive', 'canonical', 'serialize']);
  await p.run('emit-a', ['emit']);
  await p.run('emit-b', ['emit']);

  const poster = postSteadily((e) => p.post([e]), pool.events, EVENTS_PER_S);
  let brokerDown = false;
  try {
    await eventually(async () => (await topicCount(topic, BROKER)) >= 20, 30_000, 250);
    await kafkaDown(PORT);
    brokerDown = true;
    await delay(3000); // the active emit fails its sends and keeps retrying its batch
    const pause = await pausePastLease(p, 'emit', { minMs: LEASE_MS + 500 });
    await delay(2000); // thawed, while the broker is still down
    await kafkaUp(PORT);
    brokerDown = false;
    await delay(3000); // a few more events after the broker is back
    await poster.stop();

    const events = pool.events.slice(0, poster.posted());
    const causes = emissionCauses(roots, events);
    const total = roots.reduce((sum, r) => sum + causes.get(r)!.length, 0);
    await p.waitDrained(120_000);
    const counted = await waitForCount(topic, total, 60_000, 1500, BROKER).catch((err: Error) => err.message);
    const perRoot = await decodeTopic(await readTopic(topic, 60_000, BROKER));
    const faults = sequenceFaults(perRoot);
    console.log(
      `emit-pause-outage: ${events.length} events, ${total} messages expected; ${pause.paused} frozen ` +
        `${pause.ms.toFixed(0)} ms in the outage, ${pause.successor} took over; ${faults.duplicates} duplicates, ` +
        `${faults.outOfOrder} out of order; fenced: ${fencings(p, ['emit-a', 'emit-b']).join(' | ')}`,
    );
    expect(faults).toEqual({ duplicates: 0, outOfOrder: 0 });
    expect(counted).toBeUndefined();
    expectEveryUpdateOnce(roots, events, perRoot, await p.canonicalSequences());
    expect(await p.deadLetters()).toEqual([]);
    expect(p.crashes()).toEqual([]);
  } finally {
    await poster.stop();
    if (brokerDown) await kafkaUp(PORT);
    await p.stop();
  }
}, 400_000);
