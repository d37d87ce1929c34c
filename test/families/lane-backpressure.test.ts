/**
 * Backpressure reaches the priority lanes, against the real Redis: when publishing lags, the
 * generic events pile up on `events:<lane>` (validate's declared outputs), not on `ingest`. Over
 * ATLAS_HIGH_WATER there, validate stops reading and the door answers 429; once the lane drains
 * (its publish stage runs), both go on.
 */
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { backlog } from '../../pipeline/backlog.ts';
import { laneStream } from '../../pipeline/lanes.ts';
import { EVENTS, streams } from '../../stages/streams.ts';
import { deleteTopics, kafkaInit, uniqueTopic } from '../support/e2e-kafka.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { envelope, spaceId } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { postJson } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('lane-bp');
const HIGH_WATER = 10;

/** atlas_backpressure_paused of validate in the door's process (the door runs validate too). */
function validatePaused(metrics: string): string | undefined {
  return metrics
    .split('\n')
    .find((l) => l.startsWith('atlas_backpressure_paused{') && l.includes('stage="validate"'))
    ?.split(' ')
    .at(-1);
}

it('a lane over the high-water mark pauses validate and makes the door answer 429; draining it lifts both', async () => {
  const game = `bp${randomUUID().slice(0, 8)}`;
  const join = (i: number) =>
    envelope('game.player_joined', { game_id: game, player_id: `p${i}`, team: String(i) });
  const topic = uniqueTopic('lane-bp');
  const p = new E2EPipeline(fx.redis, {
    prefix: fx.prefix,
    topic,
    roots: [spaceId(0xb0)],
    env: { ATLAS_HIGH_WATER: String(HIGH_WATER) },
  });
  const lane = p.keys.stream(laneStream(EVENTS, 'normal'));
  try {
    // The topology route too: it drains the skip markers validate leaves on `validated`, so
    // only the lane can hold validate back.
    await kafkaInit(topic);
    await p.run('door', ['ingest', 'validate', 'transitive', 'canonical', 'serialize', 'emit']);
    const first = Array.from({ length: HIGH_WATER + 5 }, (_, i) => join(i));
    expect((await postJson(`${p.doorUrl()}/events/batch`, first)).status).toBe(202);
    // validate moved them all to the lane; `ingest` itself is empty.
    await eventually(async () => {
      expect(await fx.redis.xlen(lane)).toBe(first.length);
      expect(await backlog(fx.redis, p.keys.stream(streams.ingest))).toBe(0);
    }, 30_000);

    // The door sees the lane's backlog (not `ingest`'s, which is empty): its first answer is 429.
    await eventually(
      async () => expect((await p.ready()).text).toContain('backlog over the high-water mark'),
      10_000,
    );
    expect(await backlog(fx.redis, p.keys.stream(streams.ingest))).toBe(0);
    const refused = await postJson(`${p.doorUrl()}/events`, join(100));
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ error: 'backpressure' });
    await eventually(async () => {
      expect(validatePaused(await p.metrics())).toBe('1');
      expect(await backlog(fx.redis, p.keys.stream(streams.validated))).toBe(0);
    }, 10_000);

    // Publishing drains the lane: the door takes events again and validate reads again.
    await p.run('publish', ['publish-normal']);
    await eventually(async () => expect(await backlog(fx.redis, lane)).toBe(0), 60_000);
    await eventually(async () => {
      expect((await postJson(`${p.doorUrl()}/events`, join(101))).status).toBe(202);
      expect(validatePaused(await p.metrics())).toBe('0');
    }, 10_000);
  } finally {
    await p.stop();
    await deleteTopics([topic, `game.${game}.players`]);
  }
}, 120_000);
