/**
 * kill -9 of the emit stage while it publishes, again and again: the topic must end up with every
 * update exactly once, in order. A seeded churn sequence (nearly every event changes a root's
 * graph, so about as many messages as events; a few hundred in all) is posted at a steady pace to
 * ingest … serialize in one process; emit runs alone, one message per Kafka send. Each cycle
 * waits until the restarted emit publishes (it drains what piled up while it was down) and kills
 * it: every other time at a random moment, the other times aimed at the dangerous window — the
 * process is frozen (SIGSTOP) at random moments until Kafka holds a message that Redis does not
 * yet record as published, and killed right there. The restarted emit must read the topic back
 * and skip what is there.
 *
 * At the end, per root: sequence numbers exactly 1..N in topic order (no duplicate, no gap), N =
 * the count per-event emission makes (replayed through the domain) = the canonical stage's own
 * count, the last update = the reference's final graph, every message carrying the meta of the
 * event behind it; nothing left in Redis, nothing dead-lettered.
 */
import { afterEach, expect, it } from 'vitest';
import { createTopic, decodeTopic, readTopic, topicCounter, waitForCount } from '../support/e2e-kafka.ts';
import { useSharedBroker } from '../support/e2e-lock.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, emissionCauses, expectEveryUpdateOnce } from '../support/e2e-scenario.ts';
import { delay } from '../support/eventually.ts';
import { prng } from '../support/prng.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const SEED = 20_251_123;
/** The pool of events; posting stops once the kills are done (and at least MIN_EVENTS are in). */
const POOL = 2500;
const MIN_EVENTS = 300;
const EVENTS_PER_S = 40;
/**
 * At least MIN_KILLS kills (every other one aimed between a send and its commit, the others at
 * any moment), and more (up to MAX_KILLS) until MIN_HITS of them left Kafka ahead of Redis.
 */
const MIN_KILLS = 6;
const MAX_KILLS = 20;
const MIN_HITS = 2;

const fx = useRedis('e2e-crash');
const topic = useSharedBroker('crash');

afterEach(async () => {
  await killChildren();
});

it('kill -9 of emit mid-stream, restarted several times: every update exactly once, in order', async () => {
  const pool = churnScenario({ seed: SEED, events: POOL, roots: 2, tag: fx.prefix });
  const roots = pool.roots;

  await createTopic(topic, 3);
  // A short lease: the restarted emit takes over from its killed predecessor within 1.5 s.
  const p = new E2EPipeline(fx.redis, { prefix: fx.prefix, topic, roots, env: { ATLAS_LEASE_MS: '1500' } });
  await p.run('upstream', ['ingest', 'validate', 'transitive', 'canonical', 'serialize']);
  await p.run('emit', ['emit'], { ATLAS_BATCH_SIZE: '1' });

  let posted = 0;
  let stopPosting = false;
  const posting = (async () => {
    const started = performance.now();
    while (posted < pool.events.length && (!stopPosting || posted < MIN_EVENTS)) {
      const due = started + (posted * 1000) / EVENTS_PER_S;
      if (due > performance.now()) await delay(due - performance.now());
      await p.post([pool.events[posted]!]);
      posted++;
    }
  })();

  const rand = prng(SEED);
  /** Per kill: messages in the topic beyond what emit had committed in Redis when it died. */
  const ahead: number[] = [];
  const hits = () => ahead.filter((n) => n > 0).length;
  const committed = async () => [...(await p.emitOrder()).values()].reduce((s, next) => s + next - 1, 0);
  const counter = await topicCounter(topic);
  try {
    while (ahead.length < MAX_KILLS && (ahead.length < MIN_KILLS || hits() < MIN_HITS)) {
      if (posted >= pool.events.length) throw new Error('the event pool ran out before the kills were done');
      // Wait until this emit instance publishes (it has taken the lease and read the topic back):
      // it is then draining what piled up while it was down, one send and one commit at a time.
      const before = await counter.count();
      const deadline = Date.now() + 30_000;
      while ((await counter.count()) <= before) {
        if (Date.now() > deadline) throw new Error(`emit published nothing within 30 s\n${p.output()}`);
        await delay(5);
      }
      const emit = p.child('emit');
      if (ahead.length % 2 === 0) {
        // Aimed: freeze the process (SIGSTOP) at random moments of its drain until one falls
        // between a Kafka send and the Redis commit of it — Kafka then holds more than Redis
        // says was published — and kill it there. Gives up once the backlog is gone.
        for (let tries = 0; tries < 100; tries++) {
          emit.pause();
          await delay(30); // a request already sent (to Kafka or Redis) completes meanwhile
          if ((await counter.count()) > (await committed()) || (await p.emitBacklog()) === 0) break;
          emit.resume();
          await delay(Math.floor(rand() * 15));
        }
      } else {
        await delay(Math.floor(rand() * 40)); // any moment of the drain
      }
      await p.kill9('emit');
      await delay(200); // a produce request already sent still lands
      ahead.push((await counter.count()) - (await committed()));
      await delay(Math.floor(rand() * 300));
      await p.restart('emit');
    }
  } finally {
    await counter.close();
  }
  stopPosting = true;
  await posting;
  expect(hits()).toBeGreaterThanOrEqual(1);

  const events = pool.events.slice(0, posted);
  const causes = emissionCauses(roots, events);
  const total = roots.reduce((sum, r) => sum + causes.get(r)!.length, 0);
  expect(total).toBeGreaterThan(posted * 0.8);
  await waitForCount(topic, total, 120_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${p.output()}`);
  });
  const perRoot = await decodeTopic(await readTopic(topic));
  const canonical = await p.canonicalSequences();
  expectEveryUpdateOnce(roots, events, perRoot, canonical);
  await p.waitDrained(30_000);
  expect(await p.deadLetters()).toEqual([]);
  expect(p.crashes()).toEqual([]);
  console.log(
    `emit-crash: ${posted} events, ${total} messages, ${ahead.length} kills; messages in Kafka beyond emit's Redis commit at each kill: ${ahead.join(', ')}`,
  );
}, 420_000); // one Kafka transaction per message (ATLAS_BATCH_SIZE=1): slow on a loaded 2-core machine
