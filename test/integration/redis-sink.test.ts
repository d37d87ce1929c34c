/** RedisSink against the real Redis at REDIS_URL; each test writes a stream of its own. */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { FencedError } from '../../pipeline/stage.ts';
import { RedisSink } from '../../stages/emit/redis-sink.ts';
import type { OutMessage } from '../../stages/emit/sink.ts';
import { REDIS_URL, useRedis } from '../support/redis.ts';

const fixture = useRedis('redis-sink');
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

const root = (n: number): string => n.toString(16).padStart(32, '0');
const message = (rootId: string, seq: number, traceparent?: string): OutMessage => ({
  rootId,
  sequenceNumber: BigInt(seq),
  value: randomBytes(40),
  traceparent,
});

let streams = 0;
function streamKey(): string {
  return fixture.keys.stream(`out:topology.canonical-${++streams}`);
}

async function startedSink(key: string, redis = fixture.redis): Promise<RedisSink> {
  const sink = new RedisSink(redis, key);
  await sink.start();
  return sink;
}

/** Fields of every entry, values as Buffers. */
async function entries(key: string): Promise<Array<Record<string, Buffer>>> {
  const raw = await fixture.redis.xrangeBuffer(key, '-', '+');
  return raw.map(([, fields]) => {
    const out: Record<string, Buffer> = {};
    for (let i = 0; i < fields.length; i += 2) out[fields[i]!.toString()] = fields[i + 1]!;
    return out;
  });
}

describe('RedisSink', () => {
  it('writes root, seq, the binary value and a traceparent per message', async () => {
    const key = streamKey();
    const sink = await startedSink(key);
    const given = `00-${'c3'.repeat(16)}-${'d4'.repeat(8)}-01`;
    const sent = [message(root(1), 1, given), message(root(1), 2), message(root(2), 1, '')];
    await sink.publish(sent);

    const written = await entries(key);
    expect(written.map((e) => [e.root?.toString(), e.seq?.toString()])).toEqual([
      [root(1), '1'],
      [root(1), '2'],
      [root(2), '1'],
    ]);
    written.forEach((e, i) => {
      expect(e.value).toEqual(Buffer.from(sent[i]!.value));
      expect(e.traceparent?.toString()).toMatch(TRACEPARENT);
    });
    expect(written[0]!.traceparent?.toString()).toBe(given);
  });

  it('reads back the last sequence per root, also from a new instance', async () => {
    const key = streamKey();
    const first = await startedSink(key);
    expect(await first.lastSequences()).toEqual(new Map());
    await first.publish([message(root(1), 1), message(root(2), 1), message(root(1), 2)]);
    await first.publish([message(root(3), 1), message(root(1), 3)]);

    const second = await startedSink(key);
    expect(await second.lastSequences()).toEqual(
      new Map([
        [root(1), 3n],
        [root(3), 1n],
        [root(2), 1n],
      ]),
    );
    expect(await second.lastSequences([root(2), root(9)])).toEqual(new Map([[root(2), 1n]]));
  });

  it('pages through a long stream', async () => {
    const key = streamKey();
    const sink = await startedSink(key);
    await sink.publish([message(root(7), 1)]);
    for (let seq = 1; seq <= 2500; seq += 500) {
      await sink.publish(Array.from({ length: 500 }, (_, i) => message(root(8), seq + i)));
    }
    expect(await sink.lastSequences()).toEqual(
      new Map([
        [root(8), 2500n],
        [root(7), 1n],
      ]),
    );
    expect(await sink.lastSequences([root(7)])).toEqual(new Map([[root(7), 1n]]));
  });

  it('after a failed publish, publishing the same messages again writes only what had not landed', async () => {
    const key = streamKey();
    const client = new Redis(REDIS_URL, { protocol: 2, lazyConnect: true, enableOfflineQueue: false });
    await client.connect();
    try {
      const sink = await startedSink(key, client);
      await sink.publish([message(root(1), 1)]);

      // The reply is lost (times out) though the MULTI ran: the batch landed.
      const landed = Array.from({ length: 3000 }, (_, i) => message(root(1), i + 2));
      client.options.commandTimeout = 1;
      await expect(sink.publish(landed)).rejects.toThrow(/timed out/);
      client.options.commandTimeout = undefined;
      await sink.publish([...landed, message(root(2), 1)]);
      expect(await fixture.redis.xlen(key)).toBe(3002);

      // The connection is gone: nothing landed.
      await client.quit();
      await expect(sink.publish([message(root(2), 2)])).rejects.toThrow();
      await client.connect();
      await sink.publish([message(root(2), 2)]);

      const written = await entries(key);
      expect(written.map((e) => `${e.root?.toString().slice(-1)}:${e.seq?.toString()}`)).toEqual([
        ...Array.from({ length: 3001 }, (_, i) => `1:${i + 1}`),
        '2:1',
        '2:2',
      ]);
    } finally {
      client.disconnect();
    }
  });
});

describe('RedisSink fenced by the emit lease', () => {
  it('writes while the lease is current; once another instance holds it, refuses (FencedError) and writes nothing', async () => {
    const key = streamKey();
    const lease = { key: fixture.keys.of('lease', 'emit-fence-test'), token: '7' };
    await fixture.redis.set(lease.key, '7');
    const sink = new RedisSink(fixture.redis, key, () => lease);
    await sink.start();
    await sink.publish([message(root(1), 1)]);

    await fixture.redis.set(lease.key, '8'); // a successor's token: we were paused past the lease
    await expect(sink.publish([message(root(1), 2), message(root(2), 1)])).rejects.toBeInstanceOf(
      FencedError,
    );
    await fixture.redis.del(lease.key); // lapsed, nobody holds it yet: still not ours
    await expect(sink.publish([message(root(1), 2)])).rejects.toBeInstanceOf(FencedError);
    expect((await entries(key)).map((e) => e.seq?.toString())).toEqual(['1']);
  });

  it('writes nothing while the instance holds no lease', async () => {
    const key = streamKey();
    const sink = new RedisSink(fixture.redis, key, () => undefined);
    await sink.start();
    await expect(sink.publish([message(root(1), 1)])).rejects.toBeInstanceOf(FencedError);
    expect(await fixture.redis.xlen(key)).toBe(0);
  });
});
