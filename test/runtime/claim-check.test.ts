import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { Commit } from '../../pipeline/commit.ts';
import { listDeadLetters, purge, redrive } from '../../pipeline/dlq.ts';
import { trimAcknowledged } from '../../pipeline/retention.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { keysMatching, useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import { consumeAll, drained, readAll } from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('blob');
afterEach(() => stopStages());

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Puts an entry on a stream the way a stage would (large fields become blobs). */
async function put(keys: typeof fx.keys, stream: string, fields: Record<string, string | Buffer>) {
  const commit = new Commit(keys, 64 * 1024);
  commit.append(keys.stream(stream), fields);
  const ids = await commit.run(fx.redis, { stream: keys.stream(stream), group: 'none' });
  return ids![0]!;
}

describe('claim-check', () => {
  it('carries a 5 MiB field through a stage as one blob, and the reader gets the bytes back', async () => {
    const { prefix, keys } = fx.freshPrefix('blob-trip');
    const data = randomBytes(5 * MiB);
    const sha = sha256(data);
    const id = await put(keys, 'in', { n: '1', data });

    const [raw] = await readAll(fx.redis, keys.stream('in'));
    expect(raw!.id).toBe(id);
    expect([...raw!.fields.keys()]).toEqual(['n', 'data@blob']);
    expect(raw!.text('data@blob')).toBe(sha);
    expect(await fx.redis.hget(keys.blobRefs, sha)).toBe('1');

    await startStage(relayStage(), testConfig(prefix));
    await eventually(() => drained(fx.redis, keys.stream('in'), 'relay'));

    const [out] = await readAll(fx.redis, keys.stream('out'));
    expect(out!.toJSON()).toEqual({ n: '1', 'data@blob': sha });
    expect(await keysMatching(fx.redis, `{${prefix}}:blob:*`)).toEqual([keys.blob(sha)]);
    expect(await fx.redis.hget(keys.blobRefs, sha)).toBe('2'); // input and output point at it
    expect(await resolveBlobs(fx.redis, keys, [out!])).toEqual(new Map());
    expect(out!.bytes('data').equals(data)).toBe(true);
    expect(await fx.redis.xlen(keys.dlq)).toBe(0);
  });

  it('dead-letters an entry whose blob was tampered with (blob_corrupt) or lost (blob_missing)', async () => {
    const { prefix, keys } = fx.freshPrefix('blob-bad');
    const a = randomBytes(100_000);
    const b = randomBytes(100_000);
    await fx.redis.xgroup('CREATE', keys.stream('in'), 'relay', '$', 'MKSTREAM');
    const idA = await put(keys, 'in', { n: 'a', data: a });
    const idB = await put(keys, 'in', { n: 'b', data: b });
    await put(keys, 'in', { n: 'c', data: 'small' });
    const tampered = Buffer.from(a);
    tampered[0]! ^= 0xff;
    await fx.redis.set(keys.blob(sha256(a)), tampered);
    await fx.redis.del(keys.blob(sha256(b)));

    await startStage(relayStage(), testConfig(prefix));
    await eventually(() => drained(fx.redis, keys.stream('in'), 'relay'));
    expect((await readAll(fx.redis, keys.stream('out'))).map((e) => e.text('n'))).toEqual(['c']);
    const dead = await listDeadLetters(fx.redis, keys);
    expect(dead.map((d) => [d.entryId, d.reason])).toEqual([
      [idA, 'blob_corrupt'],
      [idB, 'blob_missing'],
    ]);
    expect(dead[0]!.error).toContain('does not match its hash');
    expect(dead[0]!.original).toEqual({ n: 'a', 'data@blob': sha256(a) });
    expect(dead[1]!.error).toContain('is missing');
    expect(dead[0]!.stage).toBe('relay');
  });
});

describe('blob lifetimes', () => {
  it('a blob lives exactly as long as the entries that point at it: retention and DLQ purge release it', async () => {
    const { prefix, keys } = fx.freshPrefix('blob-life');
    const input = keys.stream('in');
    const output = keys.stream('out');
    const kept = randomBytes(200_000);
    const poisoned = randomBytes(200_000);
    await fx.redis.xgroup('CREATE', input, 'relay', '$', 'MKSTREAM');
    await put(keys, 'in', { n: '1', data: kept });
    await put(keys, 'in', { n: '2', data: poisoned, bad: '1' });

    // Retain nothing: the worker trims what its group has acknowledged.
    await startStage(
      relayStage({ throwsOn: (f) => f.bad === '1' }),
      testConfig(prefix, { ATLAS_RETAIN_ENTRIES: 0, ATLAS_MAX_DELIVERIES: 1 }),
    );
    await eventually(async () => expect(await fx.redis.xlen(input)).toBe(0), 15_000);
    await stopStages();

    // The output still points at the first blob; the DLQ at the second.
    expect(await fx.redis.hget(keys.blobRefs, sha256(kept))).toBe('1');
    expect(await fx.redis.hget(keys.blobRefs, sha256(poisoned))).toBe('1');
    const [dead] = await listDeadLetters(fx.redis, keys);
    expect(dead!.original['data@blob']).toBe(sha256(poisoned));

    // A downstream consumer acknowledges the output; retention of that stream releases the blob.
    expect(await consumeAll(fx.redis, output, 'next')).toHaveLength(1);
    expect(await trimAcknowledged(fx.redis, keys, output, 0)).toBe(1);
    expect(await fx.redis.exists(keys.blob(sha256(kept)))).toBe(0);
    expect(await fx.redis.hexists(keys.blobRefs, sha256(kept))).toBe(0);

    // Redrive moves the reference back onto the input; purge of a DLQ copy drops the last one.
    const [[, , newId]] = (await redrive(fx.redis, keys, [dead!.id])) as [[string, string, string]];
    const [back] = await readAll(fx.redis, input);
    expect(back!.id).toBe(newId);
    expect(back!.text('data@blob')).toBe(sha256(poisoned));
    expect(await fx.redis.hget(keys.blobRefs, sha256(poisoned))).toBe('1');
    await startStage(
      relayStage({ throwsOn: (f) => f.bad === '1' }),
      testConfig(prefix, { ATLAS_RETAIN_ENTRIES: 0, ATLAS_MAX_DELIVERIES: 1 }),
    );
    await eventually(async () => expect(await fx.redis.xlen(input)).toBe(0), 15_000);
    const [again] = await listDeadLetters(fx.redis, keys);
    expect(await purge(fx.redis, keys, [again!.id])).toEqual([again!.id]);
    expect(await fx.redis.exists(keys.blob(sha256(poisoned)))).toBe(0);
    expect(await fx.redis.hlen(keys.blobRefs)).toBe(0);
    expect(await keysMatching(fx.redis, `{${prefix}}:blob:*`)).toEqual([]);
  });

  it('retention never trims an entry some group has not acknowledged', async () => {
    const { keys } = fx.freshPrefix('blob-retain');
    const stream = keys.stream('s');
    await fx.redis.xgroup('CREATE', stream, 'fast', '$', 'MKSTREAM');
    await fx.redis.xgroup('CREATE', stream, 'slow', '$', 'MKSTREAM');
    const ids: string[] = [];
    for (let i = 1; i <= 10; i++) ids.push(await put(keys, 's', { n: String(i), data: randomBytes(70_000) }));
    await consumeAll(fx.redis, stream, 'fast');
    // 'slow' has read 4 entries and acknowledged 2 of them.
    const read = (await fx.redis.xreadgroup('GROUP', 'slow', 'c', 'COUNT', 4, 'STREAMS', stream, '>')) as [
      string,
      [string, string[]][],
    ][];
    expect(read[0]![1]).toHaveLength(4);
    await fx.redis.xack(stream, 'slow', ids[0]!, ids[1]!);

    expect(await trimAcknowledged(fx.redis, keys, stream, 0)).toBe(2);
    expect((await readAll(fx.redis, stream)).map((e) => e.text('n'))).toEqual([
      '3',
      '4',
      '5',
      '6',
      '7',
      '8',
      '9',
      '10',
    ]);
    expect(await keysMatching(fx.redis, keys.blob('*'))).toHaveLength(8);

    // Everything acknowledged, but the newest 3 are kept for replay.
    await fx.redis.xack(stream, 'slow', ids[2]!, ids[3]!);
    await consumeAll(fx.redis, stream, 'slow');
    expect(await trimAcknowledged(fx.redis, keys, stream, 3)).toBe(5);
    expect((await readAll(fx.redis, stream)).map((e) => e.text('n'))).toEqual(['8', '9', '10']);
    expect(await keysMatching(fx.redis, keys.blob('*'))).toHaveLength(3);
    expect(await fx.redis.hlen(keys.blobRefs)).toBe(3);
  });
});
