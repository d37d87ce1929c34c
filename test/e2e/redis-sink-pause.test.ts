/**
 * The Redis sink (no KAFKA_BROKER) under the same pauses as test/e2e/emit-pause.test.ts: the
 * active emit frozen past its lease, again and again, under load, a hot standby taking over, the
 * frozen one thawed holding a batch. Each write of the sink checks the lease in the same script
 * (fenced-append.lua), so the thawed one writes nothing: per root, sequence numbers exactly 1..N
 * in stream order, the last update the reference's final graph.
 */
import { expect, it } from 'vitest';
import { decodeWithStage, type RootStream } from '../support/e2e-kafka.ts';
import { fencings, type Pause, pauseRepeatedly, postSteadily, sequenceFaults } from '../support/e2e-pause.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, expectEveryUpdateOnce } from '../support/e2e-scenario.ts';
import { prng } from '../support/prng.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const SEED = 20_261_131;
const PAUSES = 4;
const LEASE_MS = 1200;
const EVENTS_PER_S = 40;
const TOPIC = 'topology.canonical';

const fx = useRedis('e2e-redis-sink-pause');

/** The sink's stream decoded, per root in stream order. */
async function perRoot(p: E2EPipeline): Promise<Map<string, RootStream>> {
  const out = new Map<string, RootStream>();
  for (const entry of await readAll(fx.redis, p.keys.stream(`out:${TOPIC}`))) {
    const update = decodeWithStage(entry.bytes('value'));
    const stream = out.get(update.root_id) ?? { updates: [], messages: [] };
    stream.updates.push(update);
    out.set(update.root_id, stream);
  }
  return out;
}

it(`the Redis sink: the active emit frozen past its lease ${PAUSES} times under load, every update exactly once, in order`, async () => {
  const pool = churnScenario({ seed: SEED, events: 2500, roots: 2, tag: fx.prefix });
  const roots = pool.roots;
  const env = { KAFKA_BROKER: '', ATLAS_LEASE_MS: String(LEASE_MS), ATLAS_BATCH_SIZE: '10' };
  const p = new E2EPipeline(fx.redis, { prefix: fx.prefix, topic: TOPIC, roots, env });
  await p.run('upstream', ['ingest', 'validate', 'transitive', 'canonical', 'serialize']);
  await p.run('emit-a', ['emit']);
  await p.run('emit-b', ['emit']);
  const written = () => fx.redis.xlen(p.keys.stream(`out:${TOPIC}`));

  const poster = postSteadily((e) => p.post([e]), pool.events, EVENTS_PER_S);
  let pauses: Pause[] = [];
  try {
    pauses = await pauseRepeatedly(p, 'emit', {
      times: PAUSES,
      leaseMs: LEASE_MS,
      progress: written,
      rand: prng(SEED),
    });
  } finally {
    await poster.stop();
  }

  const events = pool.events.slice(0, poster.posted());
  await p.waitDrained(60_000);
  const streamsPerRoot = await perRoot(p);
  const faults = sequenceFaults(streamsPerRoot);
  const fenced = fencings(p, ['emit-a', 'emit-b']);
  console.log(
    `redis-sink-pause: ${events.length} events, ${await written()} entries; ${pauses.length} pauses; ` +
      `${faults.duplicates} duplicates, ${faults.outOfOrder} out of order; fenced: ${fenced.join(' | ')}`,
  );
  expect(faults).toEqual({ duplicates: 0, outOfOrder: 0 });
  expect(fenced.length).toBeGreaterThan(0);
  expectEveryUpdateOnce(roots, events, streamsPerRoot, await p.canonicalSequences());
  expect(await p.deadLetters()).toEqual([]);
  expect(p.crashes()).toEqual([]);
  await p.stop();
}, 240_000);
