/**
 * A chain's input handed over out of stream order (entries pending under another consumer while
 * later ones are read): the ordered stage inside finds a gap. The step is not written, not
 * dead-lettered, and not retried forever in silence: the worker says so (metric, /ready) and
 * reads again in stream order once the missing entries can be taken over. And a takeover pages
 * the oldest pending entries over all other consumers, so it hands the chain no gap itself.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GroupConsumer } from '../../pipeline/consumer.ts';
import { metrics } from '../../pipeline/metrics.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import { addEntries, drained, readAll } from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('chain-gap');
afterEach(stopStages);

const N = 30;
const events = Array.from({ length: N }, (_, i) => ({ n: String(i + 1), seq: String(i + 1) }));

/** Has `consumer` of the group read the next `count` new entries (they stay pending under it). */
async function readAs(stream: string, group: string, consumer: string, count: number): Promise<void> {
  await fx.redis.xreadgroup('GROUP', group, consumer, 'COUNT', count, 'STREAMS', stream, '>');
}

async function gapsOf(stage: string): Promise<number> {
  return (await metrics.orderGaps.get()).values.find((v) => v.labels.stage === stage)?.value ?? 0;
}

describe('a gap inside a chain', () => {
  it('is held, loudly, until the missing entries are taken over; then everything goes out once, in order', async () => {
    const { prefix, keys } = fx.freshPrefix('held');
    const input = keys.stream('in');
    await addEntries(fx.redis, input, events);
    await fx.redis.xgroup('CREATE', input, 'first', '0');
    // Entries 1-5 pending under a consumer gone quiet (a zombie's read), 6.. new.
    await readAs(input, 'first', 'zombie', 5);
    // The ordered stage inside stands at seq 1, as after earlier steps.
    await fx.redis.hset(keys.of('order', 'second'), '', '1');
    const chained = await startStage(
      [
        relayStage({ name: 'first', input: 'in', output: 'middle' }),
        relayStage({ name: 'second', input: 'middle', output: 'out', order: { seq: 'seq' } }),
      ],
      testConfig(prefix, { ATLAS_BATCH_SIZE: 20, ATLAS_CLAIM_IDLE_MS: 1500 }),
    );
    const name = 'first+second';
    const before = await gapsOf(name);
    await eventually(() => /order gap/.test(chained.worker.notReady() ?? ''), 10_000, 20);
    expect(await gapsOf(name)).toBeGreaterThan(before);

    await eventually(() => drained(fx.redis, input, 'first'), 20_000);
    const out = (await readAll(fx.redis, keys.stream('out'))).map((e) => e.text('seq'));
    expect(out).toEqual(events.map((e) => e.seq));
    expect(await fx.redis.xlen(keys.dlq)).toBe(0);
    expect(await fx.redis.hget(keys.of('order', 'second'), '')).toBe(String(N + 1));
    expect(chained.worker.notReady()).toBeNull();
  }, 60_000);
});

describe('taking over pending entries', () => {
  it('takes the oldest over all other consumers, in stream order, not the first consumer’s page', async () => {
    const { keys } = fx.freshPrefix('claim');
    const input = keys.stream('in');
    const ids = await addEntries(fx.redis, input, events);
    await fx.redis.xgroup('CREATE', input, 'g', '0');
    // The older entries under a consumer listed after one holding a full page of newer ones.
    await readAs(input, 'g', 'zz-older', 5);
    await readAs(input, 'g', 'aa-newer', N - 5);
    const me = new GroupConsumer({
      redis: fx.redis,
      stream: input,
      group: 'g',
      name: 'me',
      batchSize: 20,
      handlingKey: keys.of('handling', 'g'),
    });
    const first = await me.claimStale(0);
    expect(first.map((e) => e.id)).toEqual(ids.slice(0, 20));
    const rest = await me.claimStale(0);
    expect(rest.map((e) => e.id)).toEqual(ids.slice(20));
  });
});
