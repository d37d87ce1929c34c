import { afterEach, describe, expect, it } from 'vitest';
import { Commit } from '../../pipeline/commit.ts';
import { Lease } from '../../pipeline/lease.ts';
import { FencedError } from '../../pipeline/stage.ts';
import { eventually } from '../support/eventually.ts';
import { type Child, killChildren, spawnStage } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { addEntries, drained, fieldValues, numericSort, pendingCount, range } from '../support/streams.ts';

const fx = useRedis('lease');
afterEach(() => killChildren());

describe('a singleton stage with a hot standby', () => {
  function setup(tag: string) {
    const { prefix, keys } = fx.freshPrefix(tag);
    const env = {
      ATLAS_PREFIX: prefix,
      ATLAS_LEASE_MS: '1000',
      ATLAS_BLOCK_MS: '100',
      ATLAS_BATCH_SIZE: '10',
      TEST_SLEEP_MS: '100',
    };
    const leaseKey = keys.of('lease', 'singleton');
    return {
      keys,
      env,
      input: keys.stream('in'),
      output: keys.stream('out'),
      holder: () => fx.redis.get(`${leaseKey}:holder`),
      leaseKey,
      token: async () => Number(await fx.redis.get(leaseKey)),
    };
  }

  async function pair(env: Record<string, string>): Promise<[Child, Child]> {
    const a = spawnStage('singleton', env);
    await a.waitForLog('active');
    const b = spawnStage('singleton', env);
    await b.waitForLog('waiting for the lease (hot standby)');
    return [a, b];
  }

  it('one is active, the other waits; kill -9 the active one and the standby takes over its work', async () => {
    const s = setup('lease-kill');
    const [a, b] = await pair(s.env);
    expect(await s.holder()).toBe(await a.consumer());
    const first = await s.token();

    const n = 150;
    await addEntries(
      fx.redis,
      s.input,
      range(n).map((seq) => ({ seq })),
    );
    await eventually(async () => (await fx.redis.xlen(s.output)) >= 20, 15_000);
    expect(b.logsMatching('handling')).toHaveLength(0); // a standby does nothing
    await a.waitForLog('handling', 10_000, a.logsMatching('handling').length);
    await a.kill9();

    const started = performance.now();
    await b.waitForLog('active', 10_000);
    expect(performance.now() - started).toBeLessThan(5000); // the lease (1 s) lapses, then b polls
    expect(await s.holder()).toBe(await b.consumer());
    expect(await s.token()).toBeGreaterThan(first);
    await eventually(() => drained(fx.redis, s.input, 'singleton'), 20_000);
    const seqs = await fieldValues(fx.redis, s.output, 'seq');
    expect(seqs).toHaveLength(n);
    expect(numericSort(seqs)).toEqual(range(n));

    // A clean stop hands the lease over at once (no waiting for it to lapse).
    const c = spawnStage('singleton', s.env);
    await c.waitForLog('waiting for the lease (hot standby)');
    const bName = await b.consumer();
    expect((await b.term()).code).toBe(0);
    // b gave the lease back on its way out (else it would stay b's until it lapses).
    expect([null, await c.consumer()]).toContain(await s.holder());
    expect(await s.holder()).not.toBe(bName);
    await c.waitForLog('active', 5000);
    expect(await s.holder()).toBe(await c.consumer());
  });

  it('an active instance frozen past its lease is fenced off when it wakes: nothing is written twice', async () => {
    const s = setup('lease-freeze');
    const [a, b] = await pair({ ...s.env, TEST_SLEEP_MS: '300' });
    const n = 100;
    await addEntries(
      fx.redis,
      s.input,
      range(n).map((seq) => ({ seq })),
    );
    await eventually(async () => (await fx.redis.xlen(s.output)) >= 10, 15_000);
    await a.waitForLog('handling', 10_000, a.logsMatching('handling').length);
    a.pause(); // mid-batch: its renewals stop, its lease lapses
    const frozen = await a.consumer();
    expect(await pendingCount(fx.redis, s.input, 'singleton', frozen)).toBeGreaterThan(0);

    await b.waitForLog('active', 10_000);
    await b.waitForLog('took over pending entries of other consumers', 10_000);
    a.resume();
    await a.waitForLog(/stepping down/, 10_000);
    await a.waitForLog('waiting for the lease (hot standby)', 10_000);

    await eventually(() => drained(fx.redis, s.input, 'singleton'), 30_000);
    const seqs = await fieldValues(fx.redis, s.output, 'seq');
    expect(seqs).toHaveLength(n);
    expect(numericSort(seqs)).toEqual(range(n));
    expect(await s.holder()).toBe(await b.consumer());
  });
});

describe('fencing', () => {
  it('a commit with a stale fence token fails with FencedError and writes nothing', async () => {
    const { keys } = fx.freshPrefix('lease-fence');
    const key = keys.of('lease', 'x');
    const input = keys.stream('in');
    const output = keys.stream('out');

    const a = new Lease(fx.redis, key, 600, 'a');
    expect(await a.acquire(() => false)).toBe(true);
    const stale = a.token!;
    let lost = false;
    a.onLost = () => {
      lost = true;
    };
    const b = new Lease(fx.redis, key, 600, 'b');
    let gaveUp = false;
    const bWaiting = b.acquire(() => gaveUp);
    // a stalls: its lease runs out before it renews.
    await fx.redis.pexpire(key, 1);
    expect(await bWaiting).toBe(true);
    expect(Number(b.token)).toBeGreaterThan(Number(stale));
    expect(await b.holderName()).toBe('b');
    await eventually(() => lost, 2000);
    expect(a.token).toBeUndefined();

    await fx.redis.xgroup('CREATE', input, 'x', '$', 'MKSTREAM');
    const [id] = await addEntries(fx.redis, input, [{ n: '1' }]);
    await fx.redis.xreadgroup('GROUP', 'x', 'c', 'STREAMS', input, '>');
    const step = () => {
      const c = new Commit(keys, 64 * 1024);
      c.append(output, { n: '1', big: Buffer.alloc(70_000, 1) });
      c.append(keys.dlq, { reason: 'test' });
      c.write('HSET', keys.of('state', 'x'), 'next', '2');
      c.ack(id!);
      return c;
    };
    await expect(
      step().run(fx.redis, { stream: input, group: 'x' }, { lease: { key, token: stale } }),
    ).rejects.toBeInstanceOf(FencedError);
    expect(await fx.redis.exists(output, keys.dlq, keys.of('state', 'x'), keys.blobRefs)).toBe(0);
    expect(await fx.redis.keys(keys.blob('*'))).toEqual([]);
    expect(await pendingCount(fx.redis, input, 'x')).toBe(1);

    // The current holder's commit goes through.
    const written = await step().run(
      fx.redis,
      { stream: input, group: 'x' },
      { lease: { key, token: b.token! } },
    );
    expect(written).toHaveLength(2);
    expect(await fx.redis.xlen(output)).toBe(1);
    expect(await fx.redis.hget(keys.of('state', 'x'), 'next')).toBe('2');
    expect(await pendingCount(fx.redis, input, 'x')).toBe(0);

    gaveUp = true;
    await a.release(); // not ours any more: a no-op
    expect(await b.holderName()).toBe('b');
    await b.release();
    expect(await fx.redis.exists(key)).toBe(0);
  });
});

describe('a singleton that dies while entries wait in its re-sequencer', () => {
  it('entries that only wait behind a gap survive more restarts than ATLAS_MAX_DELIVERIES', async () => {
    const { prefix, keys } = fx.freshPrefix('lease-held');
    const input = keys.stream('in');
    const output = keys.stream('out');
    const env = {
      ATLAS_PREFIX: prefix,
      ATLAS_LEASE_MS: '1000',
      ATLAS_BLOCK_MS: '100',
      ATLAS_MAX_DELIVERIES: '2',
    };
    // seq 1 is missing: 2..6 are read and held by the re-sequencer, never handled.
    await addEntries(
      fx.redis,
      input,
      range(5, 2).map((seq) => ({ seq })),
    );
    for (let restart = 0; restart < 4; restart++) {
      const child = spawnStage('ordered-singleton', env);
      await child.waitForLog('active', 10_000);
      const name = await child.consumer();
      await eventually(
        async () => (await pendingCount(fx.redis, input, 'ordered-singleton', name)) === 5,
        10_000,
      );
      await child.kill9();
    }
    const last = spawnStage('ordered-singleton', env);
    await last.waitForLog('active', 10_000);
    await addEntries(fx.redis, input, [{ seq: '1' }]);
    await eventually(async () => (await fx.redis.xlen(output)) === 6, 15_000);
    expect(await fieldValues(fx.redis, output, 'seq')).toEqual(range(6));
    expect(await fx.redis.xlen(keys.dlq)).toBe(0);
  });
});
