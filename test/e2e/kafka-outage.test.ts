/**
 * The Kafka broker goes away for 30 s while events keep coming (`ops/services down kafka`, 30 s,
 * `ops/services up kafka`), with the pipeline as `atlas up` (one process, so its /ready covers the
 * emit stage's circuit):
 *
 * - /ready answers 503 naming the emit sink while the broker is down (from the moment the circuit
 *   opens until the broker is back), and 200 again afterwards;
 * - the Redis stream `{prefix}:serialized` holds the backlog: it grows through the outage and is
 *   drained afterwards; nothing is dead-lettered (an outage is transient, never poison);
 * - afterwards the topic holds every update exactly once, in order (per root 1..N, N = what
 *   per-event emission makes of the posted events), the last one the reference's final graph;
 * - /metrics says so: during the outage sink faults counted (kind=sink), failed publishes timed,
 *   the circuit open, emit's lag in seconds growing; afterwards emit's entries out and the
 *   sink's messages are the messages in the topic.
 *
 * The broker: by default a broker of this test's own (ops/services on ATLAS_E2E_OUTAGE_KAFKA_PORT,
 * default 29092; the same Kafka 3.9.2 KRaft setup as the shared one), so stopping it disturbs no
 * other test file or concurrent test run; it is stopped again at the end unless it was up before.
 * With ATLAS_E2E_OUTAGE_BROKER=shared the test stops the shared broker (ATLAS_TEST_KAFKA_BROKER,
 * 127.0.0.1:9092) instead, holding the e2e broker lock exclusively (test/support/e2e-lock.ts) so
 * that no other e2e file uses it meanwhile. Either way the broker is brought up again when the test
 * ends, also when it fails.
 */
import { expect, it } from 'vitest';
import { createTopic, decodeTopic, readTopic, topicCount, waitForCount } from '../support/e2e-kafka.ts';
import { useOutageBroker } from '../support/e2e-lock.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, emissionCauses, expectEveryUpdateOnce } from '../support/e2e-scenario.ts';
import { kafkaDown, kafkaUp } from '../support/e2e-services.ts';
import { delay, eventually } from '../support/eventually.ts';
import { useRedis } from '../support/redis.ts';

const { port: PORT, broker: BROKER, topic } = useOutageBroker('outage');

const OUTAGE_MS = 30_000;
const EVENTS_PER_S = 20;
/** The circuit opens within this long after the broker went down (three failed sends, ~3 s each). */
const OPEN_WITHIN_MS = 20_000;

const fx = useRedis('e2e-outage');

/** One series' value in a /metrics text (NaN when absent). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : Number.NaN;
}

interface Sample {
  /** ms since the broker was down. */
  t: number;
  status: number;
  reason: string | undefined;
}

it('Kafka down for 30 s mid-stream: not ready meanwhile, backlog in Redis, nothing dead-lettered, then every update exactly once in order', async () => {
  const pool = churnScenario({ seed: 30_000, events: 2000, roots: 2, tag: fx.prefix });
  const roots = pool.roots;
  await createTopic(topic, 3, BROKER);
  const p = new E2EPipeline(fx.redis, { prefix: fx.prefix, topic, roots, env: { KAFKA_BROKER: BROKER } });
  await p.up();

  let posted = 0;
  let stopPosting = false;
  const posting = (async () => {
    const started = performance.now();
    while (!stopPosting && posted < pool.events.length) {
      const due = started + (posted * 1000) / EVENTS_PER_S;
      if (due > performance.now()) await delay(due - performance.now());
      await p.post([pool.events[posted]!]);
      posted++;
    }
  })();

  let brokerDown = false;
  try {
    // Flowing: messages arrive and the pipeline is ready.
    await eventually(async () => (await topicCount(topic, BROKER)) >= 20, 30_000, 100);
    expect((await p.ready()).status).toBe(200);

    await kafkaDown(PORT);
    brokerDown = true;
    const downAt = performance.now();
    const postedAtDown = posted;
    const samples: Sample[] = [];
    const backlogs: Array<[number, number]> = [];
    while (performance.now() - downAt < OUTAGE_MS) {
      const answer = await p.ready();
      const t = performance.now() - downAt;
      samples.push({ t, status: answer.status, reason: answer.body.reason as string | undefined });
      if (backlogs.length === 0 || t - backlogs.at(-1)![0] >= 1000) backlogs.push([t, await p.emitBacklog()]);
      await delay(250);
    }
    const postedDuringOutage = posted - postedAtDown;
    const duringOutage = await p.metrics();
    await kafkaUp(PORT);
    brokerDown = false;
    const upAt = performance.now() - downAt;

    // Ready again once the emit stage publishes again; then a few more events, and stop.
    await eventually(async () => (await p.ready()).status === 200, 60_000, 250);
    await delay(3000);
    stopPosting = true;
    await posting;

    // /ready: 503 naming the emit sink from when the circuit opened until the broker was back.
    const opened = samples.findIndex((s) => s.status === 503);
    expect(opened, `never not-ready during the outage: ${JSON.stringify(samples)}`).toBeGreaterThanOrEqual(0);
    expect(samples[opened]!.t).toBeLessThan(OPEN_WITHIN_MS);
    for (const s of samples.slice(opened)) {
      expect(s, `/ready ${s.t.toFixed(0)} ms into the outage`).toMatchObject({ status: 503 });
      expect(s.reason).toMatch(/^emit: sink unreachable/);
    }
    // The backlog waited in Redis, growing with the events of the outage.
    const peak = Math.max(...backlogs.map(([, n]) => n));
    expect(postedDuringOutage).toBeGreaterThan((OUTAGE_MS / 1000) * EVENTS_PER_S * 0.5);
    expect(peak).toBeGreaterThan(postedDuringOutage * 0.25);
    expect(backlogs.at(-1)![1]).toBeGreaterThan(backlogs[0]![1]);

    const events = pool.events.slice(0, posted);
    const causes = emissionCauses(roots, events);
    const total = roots.reduce((sum, r) => sum + causes.get(r)!.length, 0);
    await waitForCount(topic, total, 120_000, 1500, BROKER).catch((err: Error) => {
      throw new Error(`${err.message}\n${p.output()}`);
    });
    const perRoot = await decodeTopic(await readTopic(topic, 60_000, BROKER));
    const canonical = await p.canonicalSequences();
    expectEveryUpdateOnce(roots, events, perRoot, canonical);
    await p.waitDrained(30_000);
    expect(await p.emitBacklog()).toBe(0);
    expect(await p.deadLetters()).toEqual([]);
    expect(p.crashes()).toEqual([]);
    expect((await p.ready()).status).toBe(200);

    expect(sample(duringOutage, 'atlas_transient_errors_total{stage="emit",kind="sink"}')).toBeGreaterThan(0);
    expect(
      sample(duringOutage, 'atlas_sink_publish_seconds_count{sink="kafka",outcome="error"}'),
    ).toBeGreaterThan(0);
    expect(sample(duringOutage, 'atlas_circuit_open{stage="emit"}')).toBe(1);
    expect(sample(duringOutage, 'atlas_consumer_lag_seconds{stage="emit"}')).toBeGreaterThan(5);
    const after = await p.metrics();
    expect(sample(after, 'atlas_entries_out_total{stage="emit"}')).toBe(total);
    expect(sample(after, 'atlas_sink_messages_total{sink="kafka"}')).toBe(total);
    console.log(
      `kafka-outage: ${posted} events (${postedDuringOutage} during the outage), ${total} messages; ` +
        `/ready 503 from ${samples[opened]!.t.toFixed(0)} ms after the broker went down; broker back at ${upAt.toFixed(0)} ms; ` +
        `backlog peak ${peak}`,
    );
  } finally {
    stopPosting = true;
    await posting.catch(() => undefined);
    if (brokerDown) await kafkaUp(PORT);
    await p.stop();
  }
}, 400_000);
