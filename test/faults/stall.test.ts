/**
 * Entries delivered to a live consumer that never saw them — what a reply lost on the way does
 * (the connection drops after Redis delivered, ioredis sends the read again) — are not left
 * pending forever: the stall watchdog notices work waiting without progress, says so (error log,
 * atlas_stalled, /ready 503) and re-reads the worker's own pending entries. Here the lost reply is
 * made exact: the test reads them under the worker's consumer name, so only Redis knows.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { delay, eventually } from '../support/eventually.ts';
import { request } from '../support/http.ts';
import { killChildren, spawnStage } from '../support/processes.ts';
import { freePort, useRedis } from '../support/redis.ts';
import { fieldValues, numericSort, range } from '../support/streams.ts';

const fx = useRedis('stall');

afterEach(async () => {
  await killChildren();
});

describe.each(['singleton', 'ordered-singleton', 'relay'])('a %s stage whose read reply was lost', (kind) => {
  it('finds the entries again through its watchdog, and says it was stalled', async () => {
    const { prefix, keys } = fx.freshPrefix(`stall-${kind}`);
    const ops = await freePort();
    const stage = spawnStage(kind, {
      ATLAS_PREFIX: prefix,
      // Far above the test's bound: nothing but the watchdog can bring these entries back.
      ATLAS_CLAIM_IDLE_MS: '600000',
      ATLAS_STALL_MS: '2000',
      ATLAS_BLOCK_MS: '200',
      ATLAS_LEASE_MS: '1000',
      ATLAS_METRICS_PORT: String(ops),
    });
    const consumer = await stage.consumer();
    await stage.waitForLog(kind === 'relay' ? /./ : 'active');
    const input = keys.stream('in');
    // Ready: the worker has joined and made its first pass over its own pending entries.
    await eventually(async () => (await request(`http://127.0.0.1:${ops}/ready`)).status === 200, 15_000);
    await delay(1000);
    // The reply that never arrived: delivered to the worker's consumer, seen by nobody. One
    // MULTI, so the worker's own blocked read is served only after these are taken.
    const multi = fx.redis.multi();
    for (const n of range(5)) multi.xadd(input, '*', 'n', n, 'seq', n);
    multi.xreadgroup('GROUP', kind, consumer, 'COUNT', 5, 'STREAMS', input, '>');
    const replies = (await multi.exec())!;
    const delivered = replies.at(-1)![1] as [string, unknown[]][];
    expect(delivered[0]![1]).toHaveLength(5);

    await stage.waitForLog(/^stalled: work is waiting and nothing was committed/, 15_000);
    const ready = await request(`http://127.0.0.1:${ops}/ready`);
    const metrics = (await request(`http://127.0.0.1:${ops}/metrics`)).text;
    await eventually(
      async () => expect(numericSort(await fieldValues(fx.redis, keys.stream('out'), 'n'))).toEqual(range(5)),
      15_000,
    );
    await stage.waitForLog('progressing again', 10_000);
    expect(ready.status).toBe(503);
    expect(ready.body.reason).toMatch(/stalled/);
    expect(metrics).toMatch(new RegExp(`atlas_stalled\\{stage="${kind}"\\} 1`));
    expect(stage.logsMatching(/^stalled/)[0]!.level).toBe(50);
  });
});
