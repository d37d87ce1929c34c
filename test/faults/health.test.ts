/**
 * Health across processes: with every stage in a process of its own, the door's /ready and
 * `atlas streams` report the whole pipeline from the stages' heartbeats — a stage with no live
 * instance, a sink that cannot be reached — not just the door's own process.
 */
import { afterAll, expect, it } from 'vitest';
import { spaceCreated, spaceId } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { postJson, request } from '../support/http.ts';
import { PipelineProcesses } from '../support/pipeline-processes.ts';
import { runAtlas } from '../support/processes.ts';
import { freePort, useRedis } from '../support/redis.ts';

const fx = useRedis('health');
const p = new PipelineProcesses({
  ATLAS_PREFIX: fx.prefix,
  ATLAS_ROOT_SPACE_ID: spaceId(1),
  ATLAS_BLOCK_MS: '200',
  ATLAS_LEASE_MS: '1000',
  LOG_LEVEL: 'warn',
});

afterAll(async () => {
  await p.stop();
});

const ready = () => request(`${p.doorUrl()}/ready`);

it("the door's /ready and atlas streams see every stage's process", async () => {
  await p.start('door', ['run', 'ingest']);
  for (const stage of ['validate', 'transitive', 'canonical', 'serialize'])
    await p.start(stage, ['run', stage]);
  await p.start('emit', ['run', 'emit']);
  expect((await postJson(`${p.doorUrl()}/events`, spaceCreated(1))).status).toBe(202);
  // Every stage has run: the event went through to the output.
  await eventually(async () => (await fx.redis.xlen(fx.keys.stream('out:topology.canonical'))) === 1, 30_000);
  await eventually(async () => expect((await ready()).status).toBe(200), 20_000);

  await eventually(async () => (await fx.redis.scard(fx.keys.of('stages'))) === 5, 10_000);
  await p.kill9('validate');
  await eventually(async () => {
    const answer = await ready();
    expect(answer.status, answer.text).toBe(503);
    expect(answer.body.reason).toMatch(/validate: no live instance/);
  }, 15_000);
  const streams = await runAtlas(['streams', '--json'], p.env);
  expect(JSON.parse(streams.stdout).problems).toContain('validate: no live instance');
  await p.restart('validate');
  await eventually(async () => expect((await ready()).status).toBe(200), 20_000);

  // An emit that cannot reach its broker: the door names it, though it runs elsewhere.
  await p.kill9('emit');
  await p.start('emit-nobroker', ['run', 'emit'], { KAFKA_BROKER: `127.0.0.1:${await freePort()}` });
  await eventually(async () => {
    const answer = await ready();
    expect(answer.status).toBe(503);
    expect(answer.body.reason).toMatch(/emit \(.*\): sink unreachable/);
  }, 60_000);
  const text = await runAtlas(['streams'], p.env);
  expect(text.stdout).toMatch(/NOT READY/);
  expect(text.stdout).toMatch(/! emit \(.*\): sink unreachable/);
}, 180_000);
