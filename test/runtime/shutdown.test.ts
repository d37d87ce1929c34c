import { afterEach, describe, expect, it } from 'vitest';
import { groupsOf } from '../../pipeline/backlog.ts';
import { registry } from '../../pipeline/metrics.ts';
import { testConfig } from '../support/config.ts';
import { eventually, stays } from '../support/eventually.ts';
import { killChildren, spawnAtlas, spawnStage } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import {
  addEntries,
  consumeAll,
  drained,
  fieldValues,
  numericSort,
  pendingCount,
  range,
} from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('stop');
afterEach(async () => {
  await stopStages();
  await killChildren();
});

describe('SIGTERM', () => {
  it('under load: exits 0 within ATLAS_SHUTDOWN_MS, finishing its batch; nothing lost, nothing left pending', async () => {
    const { prefix, keys } = fx.freshPrefix('stop-load');
    const input = keys.stream('in');
    const output = keys.stream('out');
    // A long claim idle time: a second worker could not take anything over; it must not need to.
    const env = {
      ATLAS_PREFIX: prefix,
      ATLAS_BATCH_SIZE: '20',
      ATLAS_BLOCK_MS: '200',
      ATLAS_SHUTDOWN_MS: '3000',
      TEST_SLEEP_MS: '300',
    };
    const n = 400;
    await addEntries(
      fx.redis,
      input,
      range(n).map((seq) => ({ seq })),
    );
    const a = spawnStage('relay', env);
    const consumer = await a.consumer();
    await eventually(async () => (await fx.redis.xlen(output)) >= 40, 20_000);
    await a.waitForLog('handling', 10_000, a.logsMatching('handling').length); // mid-batch
    const stop = await a.term();
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(3000);
    expect(a.logsMatching('stopped cleanly')).toHaveLength(1);
    expect(await pendingCount(fx.redis, input, 'relay', consumer)).toBe(0);
    const done = (await fieldValues(fx.redis, output, 'seq')).length;
    expect(done % 20).toBe(0); // whole batches only
    expect(done).toBeLessThan(n);

    const b = spawnStage('relay', { ...env, TEST_SLEEP_MS: '0' });
    await eventually(() => drained(fx.redis, input, 'relay'), 20_000);
    const seqs = await fieldValues(fx.redis, output, 'seq');
    expect(seqs).toHaveLength(n);
    expect(numericSort(seqs)).toEqual(range(n));
    expect((await b.term()).code).toBe(0);
  });

  it('a batch that outlives ATLAS_SHUTDOWN_MS: exit 1 at the bound, its entries stay pending and are taken over', async () => {
    const { prefix, keys } = fx.freshPrefix('stop-bound');
    const input = keys.stream('in');
    const env = {
      ATLAS_PREFIX: prefix,
      ATLAS_BATCH_SIZE: '5',
      ATLAS_SHUTDOWN_MS: '500',
      ATLAS_BLOCK_MS: '100', // an idle stop waits out one blocking read
      ATLAS_CLAIM_IDLE_MS: '300',
      TEST_SLEEP_MS: '20000',
    };
    await addEntries(
      fx.redis,
      input,
      range(5).map((seq) => ({ seq })),
    );
    const a = spawnStage('relay', env);
    const consumer = await a.consumer();
    await a.waitForLog('handling');
    const stop = await a.term();
    expect(stop.code).toBe(1);
    expect(stop.ms).toBeGreaterThanOrEqual(450);
    expect(stop.ms).toBeLessThan(2500);
    expect(await pendingCount(fx.redis, input, 'relay', consumer)).toBe(5);
    const b = spawnStage('relay', { ...env, TEST_SLEEP_MS: '0' });
    await eventually(() => drained(fx.redis, input, 'relay'), 15_000);
    expect(numericSort(await fieldValues(fx.redis, keys.stream('out'), 'seq'))).toEqual(range(5));
    expect((await b.term()).code).toBe(0);
  });

  it('`atlas run ingest validate` stops cleanly with exit 0', async () => {
    const { prefix } = fx.freshPrefix('stop-cli');
    const p = spawnAtlas(['run', 'ingest', 'validate'], {
      ATLAS_PREFIX: prefix,
      ATLAS_HTTP_PORT: '0',
      ATLAS_SHUTDOWN_MS: '5000',
    });
    await p.waitForLog('running');
    const address = String((await p.waitForLog('ingest listening')).address);
    const health = await fetch(`${address.replace('0.0.0.0', '127.0.0.1')}/health`);
    expect(health.status).toBe(200);
    const stop = await p.term();
    expect(stop.code).toBe(0);
    expect(stop.ms).toBeLessThan(5000);
  });
});

describe('backpressure', () => {
  async function pausedGauge(stage: string): Promise<number | undefined> {
    const metric = await registry.getSingleMetric('atlas_backpressure_paused')?.get();
    return metric?.values.find((v) => v.labels.stage === stage)?.value;
  }

  it('pauses reading while the output backlog is over ATLAS_HIGH_WATER, resumes when it is drained', async () => {
    const { prefix, keys } = fx.freshPrefix('stop-bp');
    const input = keys.stream('in');
    const output = keys.stream('out');
    const n = 60;
    await fx.redis.xgroup('CREATE', output, 'next', '$', 'MKSTREAM');
    await addEntries(
      fx.redis,
      input,
      range(n).map((seq) => ({ seq })),
    );
    const stage = await startStage(
      relayStage({ name: 'bp', sleepMs: 40 }),
      testConfig(prefix, { ATLAS_HIGH_WATER: 5, ATLAS_BATCH_SIZE: 1 }),
    );

    await eventually(() => stage.worker.isPaused, 10_000);
    expect(await pausedGauge('bp')).toBe(1);
    expect(await stage.notReady?.()).toBe('output over high-water mark');
    const atPause = await fx.redis.xlen(output);
    expect(atPause).toBeGreaterThan(5);
    expect(atPause).toBeLessThan(n);
    // Paused: at most the batch in flight lands, the input waits.
    await stays(async () => expect(await fx.redis.xlen(output)).toBeLessThanOrEqual(atPause + 1), 1500, 100);
    const lag = (await groupsOf(fx.redis, input)).find((g) => g.name === 'bp')!.lag;
    expect(lag).toBeGreaterThan(0);

    // The downstream consumer catches up: reading resumes.
    await consumeAll(fx.redis, output, 'next');
    await eventually(() => !stage.worker.isPaused, 5000);
    expect(await pausedGauge('bp')).toBe(0);
    await eventually(async () => {
      await consumeAll(fx.redis, output, 'next');
      return drained(fx.redis, input, 'bp');
    }, 20_000);
    expect(numericSort(await fieldValues(fx.redis, output, 'seq'))).toEqual(range(n));
  });
});
