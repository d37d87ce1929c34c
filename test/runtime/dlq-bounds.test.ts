/** The DLQ's bounds: by count and by age, counted and logged, blob references kept right. */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Commit } from '../../pipeline/commit.ts';
import { listDeadLetters, trimDeadLetters } from '../../pipeline/dlq.ts';
import { registry } from '../../pipeline/metrics.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { capturingLog } from '../support/http.ts';
import { keysMatching, useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('dlqb');
afterEach(() => stopStages());

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function trimmedTotal(): Promise<number> {
  const metric = await registry.getSingleMetric('atlas_dlq_trimmed_total')!.get();
  return metric.values[0]?.value ?? 0;
}

/** Puts an entry on a stream the way a stage would (large fields become blobs). */
async function put(keys: typeof fx.keys, fields: Record<string, string | Buffer>): Promise<void> {
  const commit = new Commit(keys, 64 * 1024);
  commit.append(keys.stream('in'), fields);
  await commit.run(fx.redis, { stream: keys.stream('in'), group: 'none' });
}

describe('the bounded DLQ', () => {
  it('keeps the newest ATLAS_DLQ_MAX_ENTRIES dead letters; the worker trims, counts, and releases blobs', async () => {
    const { prefix, keys } = fx.freshPrefix('dlqb-count');
    await fx.redis.xgroup('CREATE', keys.stream('in'), 'relay', '$', 'MKSTREAM');
    const data = [1, 2, 3].map(() => randomBytes(100_000));
    const shared = randomBytes(100_000);
    for (const [n, bytes] of [...data, shared, shared].entries())
      await put(keys, { n: String(n), data: bytes });
    const before = await trimmedTotal();

    await startStage(
      relayStage({ throwsOn: () => true }),
      testConfig(prefix, { ATLAS_MAX_DELIVERIES: 1, ATLAS_RETAIN_ENTRIES: 0, ATLAS_DLQ_MAX_ENTRIES: 2 }),
    );
    await eventually(async () => {
      expect(await fx.redis.xlen(keys.stream('in'))).toBe(0);
      expect((await listDeadLetters(fx.redis, keys)).map((d) => d.original.n)).toEqual(['3', '4']);
    }, 15_000);
    await stopStages();

    expect(await trimmedTotal()).toBe(before + 3);
    // Only the blob both kept dead letters point at is left, counted twice.
    expect(await keysMatching(fx.redis, keys.blob('*'))).toEqual([keys.blob(sha256(shared))]);
    expect(await fx.redis.hgetall(keys.blobRefs)).toEqual({ [sha256(shared)]: '2' });
  });

  it('deletes dead letters older than ATLAS_DLQ_MAX_AGE_S, logs it at warn, and leaves young ones', async () => {
    const { keys } = fx.freshPrefix('dlqb-age');
    const blob = randomBytes(1000);
    const sha = sha256(blob);
    await fx.redis.set(keys.blob(sha), blob);
    await fx.redis.hset(keys.blobRefs, sha, 2);
    const now = Date.now();
    // Stream ids carry the time an entry was added: one a day old, one from now, same blob.
    await fx.redis.xadd(keys.dlq, `${now - 86_400_000}-0`, 'stage', 's', 'orig.data@blob', sha);
    await fx.redis.xadd(keys.dlq, '*', 'stage', 's', 'orig.data@blob', sha);
    const captured = capturingLog();
    const before = await trimmedTotal();

    const bounds = { ATLAS_DLQ_MAX_ENTRIES: 0, ATLAS_DLQ_MAX_AGE_S: 3600 };
    expect(await trimDeadLetters(fx.redis, keys, bounds, captured.log)).toBe(1);
    expect(await trimDeadLetters(fx.redis, keys, bounds, captured.log)).toBe(0);
    expect(await fx.redis.xlen(keys.dlq)).toBe(1);
    expect(await fx.redis.hget(keys.blobRefs, sha)).toBe('1');
    expect(await fx.redis.exists(keys.blob(sha))).toBe(1);
    expect(await trimmedTotal()).toBe(before + 1);
    const warned = captured.lines.filter((l) => l.level === 40);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ trimmed: 1, msg: expect.stringContaining('dead letters deleted') });

    // Unbounded: nothing is touched, not even read.
    const trim = (maxAgeS: number) =>
      trimDeadLetters(
        fx.redis,
        keys,
        { ATLAS_DLQ_MAX_ENTRIES: 0, ATLAS_DLQ_MAX_AGE_S: maxAgeS },
        captured.log,
      );
    expect(await trim(0)).toBe(0);
    // The last reference goes with the last entry pointing at it.
    await new Promise((r) => setTimeout(r, 1100));
    expect(await trim(1)).toBe(1);
    expect(await fx.redis.exists(keys.blob(sha))).toBe(0);
    expect(await fx.redis.hexists(keys.blobRefs, sha)).toBe(0);
  });
});
