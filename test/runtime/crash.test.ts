import { afterEach, describe, expect, it } from 'vitest';
import { listDeadLetters } from '../../pipeline/dlq.ts';
import { accept } from '../../stages/ingest/accept.ts';
import { streams } from '../../stages/streams.ts';
import { envelope, spaceCreated } from '../support/events.ts';
import { delay, eventually } from '../support/eventually.ts';
import { killChildren, spawnAtlas, spawnStage } from '../support/processes.ts';
import { joinedGeneration, useRedis } from '../support/redis.ts';
import { addEntries, drained, fieldValues, numericSort, pendingCount, range } from '../support/streams.ts';

const fx = useRedis('crash');
afterEach(() => killChildren());

describe('kill -9 of a worker process mid-batch', () => {
  it('another process takes over its pending entries: every entry arrives downstream exactly once', async () => {
    const { prefix, keys } = fx.freshPrefix('crash-relay');
    const input = keys.stream('in');
    const output = keys.stream('out');
    const env = {
      ATLAS_PREFIX: prefix,
      ATLAS_BATCH_SIZE: '10',
      ATLAS_CLAIM_IDLE_MS: '500',
      ATLAS_BLOCK_MS: '100',
      TEST_SLEEP_MS: '150',
    };
    const n = 200;
    await addEntries(
      fx.redis,
      input,
      range(n).map((seq) => ({ seq })),
    );

    const a = spawnStage('relay', env);
    const victim = await a.consumer();
    await eventually(async () => (await fx.redis.xlen(output)) >= 30, 20_000);
    // Kill it while it is inside a batch: just after it starts handling one.
    await a.waitForLog('handling', 10_000, a.logsMatching('handling').length);
    await a.kill9();
    const inFlight = await pendingCount(fx.redis, input, 'relay', victim);
    expect(inFlight).toBeGreaterThan(0);
    // The batch in hand and the next one, read while this one is handled and committed.
    expect(inFlight).toBeLessThanOrEqual(20);

    const b = spawnStage('relay', { ...env, TEST_SLEEP_MS: '0' });
    await eventually(() => drained(fx.redis, input, 'relay'), 30_000);
    const seqs = await fieldValues(fx.redis, output, 'seq');
    expect(seqs).toHaveLength(n);
    expect(numericSort(seqs)).toEqual(range(n));
    expect(await pendingCount(fx.redis, input, 'relay', victim)).toBe(0);
    expect(b.logsMatching('took over pending entries of other consumers').length).toBeGreaterThan(0);
    expect((await b.term()).code).toBe(0);
  });

  it('`atlas run validate` killed under load: validated (outputs and skip markers) and DLQ hold each seq once', async () => {
    const { prefix, keys } = fx.freshPrefix('crash-validate');
    const ingest = keys.stream(streams.ingest);
    const validated = keys.stream(streams.validated);
    const env = {
      ATLAS_PREFIX: prefix,
      ATLAS_BATCH_SIZE: '25',
      ATLAS_CLAIM_IDLE_MS: '500',
      ATLAS_BLOCK_MS: '100',
    };
    const n = 3000;
    const bad = (i: number) => i % 100 === 0;

    const first = spawnAtlas(['run', 'validate'], env);
    // A steady producer, through the door's own atomic append.
    const producing = (async () => {
      for (let i = 1; i <= n; i += 100) {
        const batch = range(100, i).map((s) =>
          bad(Number(s)) ? envelope('space.created', { space_id: 'bad' }) : spaceCreated(Number(s)),
        );
        await accept(
          fx.redis,
          {
            keys,
            dedupWindowS: 60,
            claimCheckBytes: 65536,
            generation: () => joinedGeneration(fx.redis, keys),
          },
          batch,
          {
            traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`,
            requestId: `r${i}`,
          },
        );
        await delay(15);
      }
    })();
    await eventually(async () => (await fx.redis.xlen(validated)) >= 500, 20_000);
    await first.kill9();
    const second = spawnAtlas(['run', 'validate'], env);
    await producing;
    await eventually(() => drained(fx.redis, ingest, 'validate'), 30_000);

    const seqs = await fieldValues(fx.redis, validated, 'seq');
    expect(seqs).toHaveLength(n);
    expect(numericSort(seqs)).toEqual(range(n));
    const skipped = (await fieldValues(fx.redis, validated, 'skip')).length;
    expect(skipped).toBe(n / 100);
    const dead = await listDeadLetters(fx.redis, keys);
    expect(dead.map((d) => d.original.seq).sort()).toEqual(
      range(n)
        .filter((s) => bad(Number(s)))
        .sort(),
    );
    expect((await second.term()).code).toBe(0);
  });
});
