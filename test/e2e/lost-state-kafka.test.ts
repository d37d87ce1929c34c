/**
 * Redis loses the pipeline's state and every process is restarted, so nothing remembers the old
 * generation: the emit stage finds the Kafka topic holding messages of a generation this Redis
 * does not descend from, and stops the whole pipeline loudly instead of publishing sequence
 * numbers from 1 again. `atlas recover` prints the cursor, continues every root's numbers after
 * the topic's last, and a replay of the source from its start ends in the right graphs — with
 * no sequence number repeated or skipped in the topic.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createTopic,
  decodeTopic,
  deleteTopics,
  readTopic,
  sequenceNumbers,
  uniqueTopic,
  waitForCount,
} from '../support/e2e-kafka.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, emissionCauses } from '../support/e2e-scenario.ts';
import { eventually } from '../support/eventually.ts';
import { expectationOf } from '../support/graph-scenario.ts';
import { postJson } from '../support/http.ts';
import { killChildren, runAtlas } from '../support/processes.ts';
import { connect, type ScratchRedis, startScratchRedis, uniquePrefix } from '../support/redis.ts';

const topic = uniqueTopic('lost');
let redis: ScratchRedis;

beforeAll(async () => {
  redis = await startScratchRedis();
  await createTopic(topic, 3);
});

afterAll(async () => {
  await killChildren();
  await deleteTopics([topic]).catch(() => undefined);
  await redis?.stop();
});

const countOf = (causes: Map<string, number[]>) => [...causes.values()].reduce((n, c) => n + c.length, 0);

it('a restart of everything on an empty Redis stops loudly; atlas recover continues the numbers', async () => {
  const prefix = uniquePrefix('e2e-lost');
  const { roots, events } = churnScenario({ seed: 4242, events: 120, roots: 2, tag: prefix });
  const before = events.slice(0, 80);
  const client = connect(redis.url);
  const p = new E2EPipeline(client, {
    prefix,
    topic,
    roots,
    env: { REDIS_URL: redis.url, ATLAS_LEASE_MS: '1000', LOG_LEVEL: 'info' },
  });
  try {
    await p.up('first');
    await p.post(before);
    const published = emissionCauses(roots, before);
    await waitForCount(topic, countOf(published), 60_000);

    await p.stop();
    await redis.restart({ keepData: false });
    const second = await p.up('second');
    // The fresh door knows nothing of the loss; the emit stage finds out from the topic.
    await postJson(`${p.doorUrl()}/events`, events[80]);
    await second.waitForLog(/^emit: the output holds 2 root\(s\) published by generation/, 30_000);
    await second.waitForLog(
      'pipeline state lost in Redis: stopped processing (nothing more is written); run `atlas recover`',
    );
    await eventually(async () => {
      const ready = await p.ready();
      expect(ready.status).toBe(503);
      expect(ready.body.reason).toMatch(/^state lost/);
    }, 20_000);
    const refused = await postJson(`${p.doorUrl()}/events`, events[81]);
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe('state_lost');

    const recovered = await runAtlas(['recover', '--json'], p.env, 60_000);
    expect(recovered.code, recovered.stderr).toBe(0);
    const report = JSON.parse(recovered.stdout);
    expect(report.recovered).toBe(true);
    const lastCursor = String((before.at(-1)!.payload.meta as { cursor: string }).cursor);
    expect(report.resume_cursor).toBe(lastCursor);
    expect(report.moved).toBe(2);

    // The source replays from its start; the pipeline numbers on after what the topic holds.
    await eventually(async () => expect((await p.ready()).status).toBe(200), 30_000);
    await p.post(events);
    const replayed = emissionCauses(roots, events);
    await waitForCount(topic, countOf(published) + countOf(replayed), 90_000);
    const perRoot = await decodeTopic(await readTopic(topic, 60_000));
    const finals = expectationOf(roots, events).finals;
    for (const root of roots) {
      const n = published.get(root)!.length + replayed.get(root)!.length;
      expect(sequenceNumbers(perRoot.get(root))).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      const { root_id, tree, canonical_space_ids } = perRoot.get(root)!.updates.at(-1)!;
      expect({ root_id, tree, canonical_space_ids }).toEqual(finals[root]);
    }
    expect(p.crashes()).toEqual([]);
  } finally {
    await p.stop();
    client.disconnect();
  }
}, 300_000);
