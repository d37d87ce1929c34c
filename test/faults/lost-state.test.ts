/**
 * Redis restarted without its data under a running pipeline: the pipeline stops loudly (error
 * logs, /ready 503 in every process, the door 503, atlas_state_lost 1) and writes nothing — no
 * `seq` from 1 again, no streams made anew — until `atlas recover`; then it goes on by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys as keysFor } from '../../pipeline/keys.ts';
import { spaceCreated, spaceId } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { postJson, request } from '../support/http.ts';
import { type Child, killChildren, runAtlas, spawnAtlas } from '../support/processes.ts';
import { connect, freePort, type ScratchRedis, startScratchRedis, uniquePrefix } from '../support/redis.ts';

describe('Redis restarted without its data', () => {
  let redis: ScratchRedis;
  let pipeline: Child;
  let env: Record<string, string>;
  let door: string;
  let ops: string;
  const prefix = uniquePrefix('lost');
  const keys = keysFor(prefix);
  const root = spaceId(1);

  beforeAll(async () => {
    redis = await startScratchRedis();
    const [http, metrics] = [await freePort(), await freePort()];
    door = `http://127.0.0.1:${http}`;
    ops = `http://127.0.0.1:${metrics}`;
    env = {
      REDIS_URL: redis.url,
      ATLAS_PREFIX: prefix,
      ATLAS_ROOT_SPACE_ID: root,
      ATLAS_HTTP_PORT: String(http),
      ATLAS_METRICS_PORT: String(metrics),
      ATLAS_BLOCK_MS: '200',
      ATLAS_LEASE_MS: '1000',
    };
    pipeline = spawnAtlas(['up'], env);
    await pipeline.waitForLog('ingest listening', 30_000);
  });

  afterAll(async () => {
    await killChildren();
    await redis?.stop();
  });

  const outputLength = async () => {
    const c = connect(redis.url);
    try {
      return await c.xlen(keys.stream('out:topology.canonical'));
    } finally {
      c.disconnect();
    }
  };

  it('stops loudly, writes nothing, and goes on after atlas recover', async () => {
    expect((await postJson(`${door}/events`, spaceCreated(1))).status).toBe(202);
    await eventually(async () => expect(await outputLength()).toBe(1), 30_000);

    await redis.restart({ keepData: false });

    // Every stage finds out on its own and says so once, at error level.
    for (const stage of ['validate', 'transitive', 'canonical', 'serialize', 'emit'])
      await pipeline.waitForLog(
        (l) => l.stage === stage && /pipeline state lost in Redis/.test(String(l.msg)) && l.level === 50,
        20_000,
      );
    const refused = await postJson(`${door}/events`, spaceCreated(2));
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe('state_lost');
    for (const url of [`${door}/ready`, `${ops}/ready`]) {
      const ready = await request(url);
      expect(ready.status).toBe(503);
      expect(JSON.stringify(ready.body)).toMatch(/state lost/);
    }
    expect((await request(`${ops}/metrics`)).text).toMatch(/atlas_state_lost\{stage="transitive"\} 1/);
    const c = connect(redis.url);
    try {
      // Nothing starts again from scratch: no seq counter, no stream made anew by a stage.
      expect(await c.exists(keys.seq, keys.stream('ingest'), keys.stream('validated'))).toBe(0);
    } finally {
      c.disconnect();
    }

    const recovered = await runAtlas(['recover'], env, 60_000);
    expect(recovered.code, recovered.stderr).toBe(0);
    expect(recovered.stdout).toMatch(/^recovered: new generation/);
    await pipeline.waitForLog(
      (l) => l.stage === 'emit' && l.msg === 'pipeline recovered; processing again',
      20_000,
    );
    await eventually(async () => expect((await request(`${ops}/ready`)).status).toBe(200), 20_000);

    const again = await postJson(`${door}/events`, spaceCreated(1, { event_id: 'after-recover' }));
    expect(again.status).toBe(202);
    // The Redis sink lost its record too: numbering starts over in the new generation's output.
    await eventually(async () => expect(await outputLength()).toBe(1), 30_000);
    const second = await runAtlas(['recover'], env, 60_000);
    expect(second.stdout).toMatch(/intact/);
  });
});
