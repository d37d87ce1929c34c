/**
 * The producer client against a real door and Redis: batches and their flushing, retries
 * through a rate limit (429) and a hung Redis (503), a lost answer retried as a duplicate,
 * refusals as typed errors with the door's field errors.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type AtlasEvent,
  AtlasProducer,
  AtlasRequestError,
  AtlasUnavailableError,
} from '../../clients/typescript/index.ts';
import { newToken } from '../../pipeline/auth.ts';
import { keys as keysFor } from '../../pipeline/keys.ts';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { address, meta, spaceId, topicId } from '../support/events.ts';
import { type Door, startDoor } from '../support/http.ts';
import { startScratchRedis, uniquePrefix, useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('client');
const ingest = fx.keys.stream(streams.ingest);

function created(n: number, extra: Partial<AtlasEvent> = {}): AtlasEvent {
  return {
    event_type: 'space.created',
    payload: {
      space_id: spaceId(n),
      topic_id: topicId(n),
      space_type: { kind: 'personal', owner: address(n) },
      meta: meta(n),
    },
    ...extra,
  } as AtlasEvent;
}

/** The requests that carried the stream's entries, as the sizes of their batches in order. */
async function batchSizes(): Promise<number[]> {
  const sizes = new Map<string, number>();
  for (const e of await readAll(fx.redis, ingest)) {
    const request = e.text('request_id');
    sizes.set(request, (sizes.get(request) ?? 0) + 1);
  }
  return [...sizes.values()];
}

describe('the producer on a healthy door', () => {
  let door: Door;
  beforeAll(async () => {
    door = await startDoor(testConfig(fx.prefix, { ATLAS_MAX_BATCH_EVENTS: 10 }));
  });
  afterAll(() => door.close());
  afterEach(() => fx.redis.del(ingest));

  it('sends full batches at once and the rest after the flush interval, in order', async () => {
    const producer = new AtlasProducer({ url: door.url, maxBatch: 3, flushIntervalMs: 300 });
    const sent = [1, 2, 3, 4, 5, 6, 7].map((n) => producer.send(created(n)));
    const accepted = await Promise.all(sent);
    expect(await batchSizes()).toEqual([3, 3, 1]);
    expect(accepted.map((a) => a.seq)).toEqual(accepted.map((_, i) => accepted[0]!.seq + i));
    expect(accepted.every((a) => !a.duplicate)).toBe(true);
    await producer.close();
  });

  it('holds a partial batch for the flush interval; flush() sends it now', async () => {
    const producer = new AtlasProducer({ url: door.url, flushIntervalMs: 60_000 });
    const sent = [producer.send(created(10)), producer.send(created(11))];
    await new Promise((r) => setTimeout(r, 300));
    expect(await fx.redis.xlen(ingest)).toBe(0);
    await producer.flush();
    expect((await Promise.all(sent)).map((a) => a.duplicate)).toEqual([false, false]);
    expect(await batchSizes()).toEqual([2]);
    await producer.close();
  });

  it('fills in the envelope: a fresh event_id, the producer source, version 1, a timestamp', async () => {
    const producer = new AtlasProducer({ url: door.url, source: 'client-test' });
    const before = Date.now();
    const a = await producer.send(created(20));
    await producer.close();
    expect(a.event_id).toMatch(/^[\da-f]{8}-[\da-f]{4}-4[\da-f]{3}-[\da-f]{4}-[\da-f]{12}$/);
    const [entry] = await readAll(fx.redis, ingest);
    expect(entry!.text('event_id')).toBe(a.event_id);
    expect(entry!.text('source')).toBe('client-test');
    expect(entry!.text('version')).toBe('1');
    expect(Number(entry!.text('timestamp'))).toBeGreaterThanOrEqual(before);
  });

  it('is idempotent by event_id: the same event twice is accepted once, then answered as a duplicate', async () => {
    const producer = new AtlasProducer({ url: door.url });
    const event = created(30, { event_id: 'client-test-same-event' });
    const first = await producer.send(event);
    const again = await producer.send(event);
    await producer.close();
    expect(first).toMatchObject({ event_id: 'client-test-same-event', duplicate: false });
    expect(again).toEqual({ ...first, duplicate: true });
    expect(await fx.redis.xlen(ingest)).toBe(1);
  });

  it('fails only the invalid events of a batch, with the door field errors, and sends the rest', async () => {
    const producer = new AtlasProducer({ url: door.url, maxBatch: 3, flushIntervalMs: 60_000 });
    const sent = [
      producer.send(created(40)),
      producer.send(created(41, { source: '', event_id: 'x'.repeat(129) })),
      producer.send(created(42)),
    ];
    const [good1, bad, good2] = (await Promise.allSettled(sent)) as [
      PromiseSettledResult<unknown>,
      PromiseSettledResult<unknown>,
      PromiseSettledResult<unknown>,
    ];
    await producer.close();
    expect(good1).toMatchObject({ status: 'fulfilled', value: { duplicate: false } });
    expect(good2).toMatchObject({ status: 'fulfilled', value: { duplicate: false } });
    expect(bad.status).toBe('rejected');
    const err = (bad as PromiseRejectedResult).reason as AtlasRequestError;
    expect(err).toBeInstanceOf(AtlasRequestError);
    expect(err).toMatchObject({ status: 400, code: 'invalid_envelope' });
    expect(err.requestId).toMatch(/^[\da-f-]{36}$/);
    expect(err.fieldErrors.map((e) => e.field).sort()).toEqual(['event_id', 'source']);
    expect(err.message).toMatch(/^400 invalid_envelope: .*source: /);
    expect(await fx.redis.xlen(ingest)).toBe(2);
  });

  it('keeps the event_id when an answer is lost: the retry is answered as a duplicate', async () => {
    // A proxy that forwards the first request to the door but answers 503 to the producer,
    // as if the door's answer had been lost on the way back.
    let requests = 0;
    const proxy: Server = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const answer = await fetch(new URL(req.url!, door.url), {
        method: req.method!,
        headers: { 'content-type': 'application/json' },
        body: Buffer.concat(chunks),
      });
      const body = await answer.text();
      if (++requests === 1) res.writeHead(503, { 'retry-after': '0' }).end('{}');
      else res.writeHead(answer.status, { 'content-type': 'application/json' }).end(body);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const { port } = proxy.address() as { port: number };
    try {
      const producer = new AtlasProducer({ url: `http://127.0.0.1:${port}` });
      const a = await producer.send(created(50));
      await producer.close();
      expect(requests).toBe(2);
      expect(a.duplicate).toBe(true);
      const entries = await readAll(fx.redis, ingest);
      expect(entries.map((e) => e.text('event_id'))).toEqual([a.event_id]);
    } finally {
      proxy.close();
    }
  });
});

describe('the producer with bearer tokens', () => {
  const { token, entry } = newToken('client-test', 1);
  const prefix = fx.freshPrefix('client-auth').prefix;
  let door: Door;
  beforeAll(async () => {
    door = await startDoor(testConfig(prefix, { ATLAS_AUTH_TOKENS: entry }));
  });
  afterAll(() => door.close());

  it('sends the token, and waits out a 429 for as long as Retry-After says', async () => {
    // one request per second: the second batch is refused once, then accepted
    const producer = new AtlasProducer({ url: door.url, token, maxBatch: 1 });
    const started = Date.now();
    const [a, b] = await Promise.all([producer.send(created(60)), producer.send(created(61))]);
    await producer.close();
    expect([a!.duplicate, b!.duplicate]).toEqual([false, false]);
    expect(b!.seq).toBe(a!.seq + 1);
    // Retry-After: 1 (the door rounds up), not the 100 ms of the first backoff step
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('gives up after its attempts with an AtlasUnavailableError that carries the last status', async () => {
    const producer = new AtlasProducer({ url: door.url, token, maxAttempts: 1 });
    await producer.send(created(62)).catch(() => {}); // spends this second's request
    const err = await producer.send(created(63)).catch((e: unknown) => e);
    await producer.close();
    expect(err).toBeInstanceOf(AtlasUnavailableError);
    expect(err).toMatchObject({ status: 429, attempts: 1 });
  });

  it('surfaces a missing token as a typed 401', async () => {
    const producer = new AtlasProducer({ url: door.url });
    const err = await producer.send(created(64)).catch((e: unknown) => e);
    await producer.close();
    expect(err).toBeInstanceOf(AtlasRequestError);
    expect(err).toMatchObject({ status: 401, code: 'unauthorized', fieldErrors: [] });
  });
});

describe('the producer while Redis hangs', () => {
  it('retries through the 503s and is accepted once Redis answers again', async () => {
    const redis = await startScratchRedis();
    const prefix = uniquePrefix('client-503');
    const door = await startDoor(testConfig(prefix, { REDIS_URL: redis.url }));
    try {
      const impatient = new AtlasProducer({ url: door.url, maxAttempts: 1 });
      const patient = new AtlasProducer({ url: door.url });
      redis.pause();
      const refused = await impatient.send(created(70)).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(AtlasUnavailableError);
      expect(refused).toMatchObject({ status: 503 });
      const sent = patient.send(created(71));
      setTimeout(() => redis.resume(), 2000);
      const a = await sent;
      await Promise.all([impatient.close(), patient.close()]);
      expect(a.event_id).toBeTruthy();
      const entries = await readAll(door.redis, keysFor(prefix).stream(streams.ingest));
      expect(entries.map((e) => e.text('event_id'))).toContain(a.event_id);
    } finally {
      redis.resume();
      await door.close();
      await redis.stop();
    }
  });
});
