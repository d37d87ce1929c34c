/**
 * The generic route's publish stage is exactly-once, against the real Redis and Kafka:
 * - kill -9 right after a Kafka commit and before the Redis commit of that step
 *   (ATLAS_FAULT_KILL_AFTER_PUBLISH), again and again: the restarted stage reads the lane's
 *   last committed progress record and acknowledges what Kafka holds instead of sending it again;
 * - the same for a summary window (published in a transaction with its progress record);
 * - the active instance frozen (SIGSTOP) past its lease under load, a hot standby taking over:
 *   the thawed zombie is fenced — by Kafka (producer epochs), and with the Redis sink (no
 *   KAFKA_BROKER) by the lease fence of the step that appends `out:<topic>`.
 * Each time: every event exactly once in the topic (read committed), in order per key.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { backlog } from '../../pipeline/backlog.ts';
import { laneStream } from '../../pipeline/lanes.ts';
import { EVENTS, outStream, streams } from '../../stages/streams.ts';
import {
  createTopic,
  deleteTopics,
  readTopic,
  type TopicMessage,
  topicCounter,
} from '../support/e2e-kafka.ts';
import { fencings, pauseRepeatedly, postSteadily } from '../support/e2e-pause.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { type Envelope, envelope, spaceId } from '../support/events.ts';
import { delay, eventually, stays } from '../support/eventually.ts';
import { unfinishedLink } from '../support/pipeline-processes.ts';
import { prng } from '../support/prng.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('publish-eo');
const PLAYERS = 4;

afterEach(async () => {
  await killChildren();
});

function pipeline(env: Record<string, string>): E2EPipeline {
  const { prefix } = fx.freshPrefix();
  return new E2EPipeline(fx.redis, { prefix, topic: `unused-${prefix}`, roots: [spaceId(0xe0)], env });
}

/** `n` joins of a game, round-robin over PLAYERS keys; `team` is the event's index (its order). */
function joins(game: string, n: number): Envelope[] {
  return Array.from({ length: n }, (_, i) =>
    envelope('game.player_joined', { game_id: game, player_id: `p${i % PLAYERS}`, team: String(i) }),
  );
}

/** Entries of `events:normal` not yet acknowledged by publish-normal (unread + pending). */
function normalBacklog(p: E2EPipeline): Promise<number> {
  return backlog(fx.redis, p.keys.stream(laneStream(EVENTS, 'normal')));
}

/** One published event, from either sink. */
interface Published {
  eventId: string;
  key: string;
  value: string;
}

const fromKafka = (messages: TopicMessage[]): Published[] =>
  messages.map((m) => ({
    eventId: m.headers['event-id']!,
    key: m.key!.toString(),
    value: m.value!.toString(),
  }));

/** What the Redis sink (no KAFKA_BROKER) holds for a topic, in stream order. */
async function fromRedisSink(p: E2EPipeline, topic: string): Promise<Published[]> {
  return (await readAll(fx.redis, p.keys.stream(outStream(topic)))).map((e) => ({
    eventId: e.text('event-id'),
    key: e.text('key'),
    value: e.text('value'),
  }));
}

/** Every posted event exactly once, and per key in posting order. */
function expectExactlyOnceInOrder(published: Published[], posted: Envelope[]): void {
  const ids = published.map((m) => m.eventId);
  const duplicates = ids.filter((id, i) => ids.indexOf(id) !== i);
  expect(duplicates).toEqual([]);
  expect(new Set(ids)).toEqual(new Set(posted.map((e) => e.event_id)));
  const perKey = new Map<string, number[]>();
  for (const m of published)
    perKey.set(m.key, [...(perKey.get(m.key) ?? []), Number(JSON.parse(m.value).team)]);
  for (const order of perKey.values()) expect(order).toEqual([...order].sort((a, b) => a - b));
}

it('kill -9 between the Kafka commit and the Redis commit, again and again: every event once, in order per key', async () => {
  const game = `eo${randomUUID().slice(0, 8)}`;
  const topic = `game.${game}.players`;
  const events = joins(game, 40);
  const p = pipeline({ ATLAS_LEASE_MS: '1500' });
  try {
    await p.run('door', ['ingest', 'validate']);
    await p.post(events, { mode: 'batch', batchSize: 20 });
    await eventually(async () => expect(await normalBacklog(p)).toBe(events.length), 30_000);

    /** Per kill: messages Kafka held beyond what Redis had acknowledged when the process died. */
    const ahead: number[] = [];
    for (let run = 0; ; run++) {
      if (run > 20) throw new Error(`not drained after ${run} runs\n${p.output()}`);
      const child = await p.run('publish', ['publish-normal'], {
        ATLAS_BATCH_SIZE: '4',
        ATLAS_FAULT_KILL_AFTER_PUBLISH: '2',
      });
      const started = performance.now();
      while (!child.exit && (await normalBacklog(p)) > 0) {
        if (performance.now() - started > 60_000) throw new Error(`run ${run} stuck\n${p.output()}`);
        await delay(100);
      }
      if (!child.exit) break; // drained before its second commit
      expect(child.exit?.signal).toBe('SIGKILL');
      const acknowledged = events.length - (await normalBacklog(p));
      ahead.push((await readTopic(topic)).length - acknowledged);
    }
    console.log(`publish kill -9: ${ahead.length} kills, Kafka ahead of Redis by ${ahead.join(', ')}`);
    expect(ahead.length).toBeGreaterThanOrEqual(3);
    // Every kill hit the window: Kafka held a batch Redis had not acknowledged.
    expect(ahead.every((n) => n > 0)).toBe(true);
    await stays(async () => expectExactlyOnceInOrder(fromKafka(await readTopic(topic)), events), 2000, 1000);
    expect(await p.deadLetters()).toEqual([]);
  } finally {
    await p.stop();
    await deleteTopics([topic]);
  }
}, 240_000);

it('kill -9 right after a summary window is published: the window is not published again', async () => {
  const layer = `eo${randomUUID().slice(0, 8)}`;
  const topic = `kasmina.telemetry.layer.${layer}.metrics`;
  const p = pipeline({ ATLAS_LEASE_MS: '1500' });
  try {
    await p.run('door', ['ingest', 'validate']);
    const metrics = [3, 4, 5].map((samples) =>
      envelope('kasmina.telemetry.layer_metrics', { layer_id: layer, samples, errors: samples % 2 }),
    );
    await p.post(metrics, { mode: 'batch' });
    // The only Kafka commits of publish-low here are summary windows: the first one kills it.
    const first = await p.run('publish', ['publish-low'], { ATLAS_FAULT_KILL_AFTER_PUBLISH: '1' });
    expect((await first.exited).signal).toBe('SIGKILL');
    const published = await readTopic(topic);
    expect(published.length).toBeGreaterThan(0);
    const open = await fx.redis.scard(p.keys.of('summary', 'low', 'open'));
    expect(open).toBeGreaterThan(0); // Redis still holds the window Kafka has: the window was hit
    await p.run('publish', ['publish-low']);
    await eventually(
      async () => expect(await fx.redis.scard(p.keys.of('summary', 'low', 'open'))).toBe(0),
      30_000,
    );
    await stays(
      async () => {
        const summaries = (await readTopic(topic)).map((m) => JSON.parse(m.value!.toString()));
        expect(summaries.reduce((n, s) => n + s.count, 0)).toBe(3);
        expect(summaries.reduce((n, s) => n + s.sums.samples, 0)).toBe(12);
      },
      3000,
      1000,
    );
  } finally {
    await p.stop();
    await deleteTopics([topic]);
  }
}, 180_000);

describe.each([
  ['Kafka', true],
  ['the Redis sink', false],
])('the active publish frozen past its lease under load, a standby taking over (%s)', (sink, kafka) => {
  it('the zombie is fenced; every event once, in order per key', async () => {
    const LEASE_MS = 1200;
    const game = `eo${randomUUID().slice(0, 8)}`;
    const topic = `game.${game}.players`;
    const events = joins(game, 2000);
    const p = pipeline({
      ATLAS_LEASE_MS: String(LEASE_MS),
      ATLAS_BATCH_SIZE: '5',
      ...(kafka ? {} : { KAFKA_BROKER: '' }),
    });
    if (kafka) await createTopic(topic, 3);
    const published = async () => (kafka ? fromKafka(await readTopic(topic)) : fromRedisSink(p, topic));
    try {
      await p.run('door', ['ingest', 'validate']);
      await p.run('publish-a', ['publish-normal']);
      await p.run('publish-b', ['publish-normal']);
      const poster = postSteadily((e) => p.post([e]), events, 40);
      const counter = kafka ? await topicCounter(topic) : undefined;
      try {
        await pauseRepeatedly(p, 'publish-normal', {
          times: 2,
          leaseMs: LEASE_MS,
          progress: async () => (counter ? counter.count() : fx.redis.xlen(p.keys.stream(outStream(topic)))),
          rand: prng(20_261_130),
        });
      } finally {
        await counter?.close();
        await poster.stop();
      }
      const posted = events.slice(0, poster.posted());
      // Drained end to end: the last events posted may still be on `ingest`.
      const links: [string, string][] = [
        [streams.ingest, 'validate'],
        [laneStream(EVENTS, 'normal'), 'publish-normal'],
      ];
      await p.waitUntil('drained', () => unfinishedLink(fx.redis, p.keys, links), 60_000, 200);
      const fenced = fencings(p, ['publish-a', 'publish-b']);
      console.log(`publish pause (${sink}): ${posted.length} events; fenced: ${fenced.join(' | ')}`);
      // A thawed instance woke up with a batch and was refused (by Kafka's epoch or the lease fence).
      expect(fenced.length).toBeGreaterThan(0);
      await stays(async () => expectExactlyOnceInOrder(await published(), posted), 2000, 1000);
      expect(p.crashes()).toEqual([]);
      expect(await p.deadLetters()).toEqual([]);
    } finally {
      await p.stop();
      if (kafka) await deleteTopics([topic]);
    }
  }, 240_000);
});
