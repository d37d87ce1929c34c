import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StateLostError } from '../../pipeline/generation.ts';
import { keys as keysFor } from '../../pipeline/keys.ts';
import { Acceptor as MergingDoor } from '../../stages/ingest/accept.ts';
import { ingestMetrics } from '../../stages/ingest/metrics.ts';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { type Envelope, spaceCreated, trustExtended } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { type Answer, type Door, postJson, request, startDoor } from '../support/http.ts';
import { freePort, joinedGeneration, keysMatching, startScratchRedis, useRedis } from '../support/redis.ts';
import { consumeAll, numericSort, range, readAll } from '../support/streams.ts';

const fx = useRedis('door');

/** Every answer carries the request id as a header and (JSON answers) in the body. */
function expectRequestId(answer: Answer, sent?: string): string {
  const header = answer.headers.get('x-request-id');
  expect(header, `x-request-id of a ${answer.status}`).toBeTruthy();
  if (typeof answer.body === 'object') expect(answer.body.request_id).toBe(header);
  if (sent) expect(header).toBe(sent);
  return header!;
}

describe('the door on a healthy Redis', () => {
  let door: Door;
  const ingest = fx.keys.stream(streams.ingest);
  beforeAll(async () => {
    door = await startDoor(
      testConfig(fx.prefix, {
        ATLAS_MAX_BODY_BYTES: 8192,
        ATLAS_MAX_BATCH_EVENTS: 5,
        ATLAS_CLAIM_CHECK_BYTES: 2048,
      }),
    );
  });
  afterAll(() => door.close());

  it('answers 202 with seq and stream id once Redis has the entry', async () => {
    const event = spaceCreated(1);
    const a = await postJson(`${door.url}/events`, event, {
      traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
    });
    expect(a.status).toBe(202);
    expect(a.body).toMatchObject({ event_id: event.event_id, duplicate: false });
    expect(a.body.seq).toBeTypeOf('number');
    expect(a.body.id).toMatch(/^\d+-\d+$/);
    expectRequestId(a);
    // The entry is there the moment the answer is.
    const [entry] = (await readAll(fx.redis, ingest)).filter((e) => e.id === a.body.id);
    expect(entry).toBeDefined();
    expect(entry!.text('seq')).toBe(String(a.body.seq));
    expect(entry!.text('event_id')).toBe(event.event_id);
    expect(entry!.text('event_type')).toBe('space.created');
    expect(entry!.text('version')).toBe('1');
    expect(entry!.text('timestamp')).toBe(String(event.timestamp));
    expect(entry!.json('payload')).toEqual(event.payload);
    expect(entry!.text('request_id')).toBe(a.body.request_id);
    expect(entry!.text('traceparent')).toBe(`00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`);
    expect(Number(await fx.redis.get(fx.keys.seq))).toBe(a.body.seq);
  });

  it('answers a repeated event_id with 200, duplicate and the seq of the first, writing nothing', async () => {
    const event = spaceCreated(2);
    const first = await postJson(`${door.url}/events`, event);
    const length = await fx.redis.xlen(ingest);
    const again = await postJson(`${door.url}/events`, { ...event, source: 'somewhere else' });
    expect(first.status).toBe(202);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ duplicate: true, seq: first.body.seq, id: first.body.id });
    expectRequestId(again);
    expect(await fx.redis.xlen(ingest)).toBe(length);
  });

  it('answers a batch per item in input order, with duplicates inside and across batches', async () => {
    const [a, b, c, d] = [spaceCreated(10), spaceCreated(11), trustExtended(10, 11), spaceCreated(12)];
    const one = await postJson(`${door.url}/events/batch`, [a, b, a, c]);
    expect(one.status).toBe(202);
    expectRequestId(one);
    const r = one.body.results as Array<{ event_id: string; seq: number; id: string; duplicate: boolean }>;
    expect(r.map((x) => x.event_id)).toEqual([a!.event_id, b!.event_id, a!.event_id, c!.event_id]);
    expect(r.map((x) => x.duplicate)).toEqual([false, false, true, false]);
    expect(r[1]!.seq).toBe(r[0]!.seq + 1);
    expect(r[2]!.seq).toBe(r[0]!.seq);
    expect(r[2]!.id).toBe(r[0]!.id);
    expect(r[3]!.seq).toBe(r[0]!.seq + 2);

    const two = await postJson(`${door.url}/events/batch`, [d, b]);
    expect(two.status).toBe(202);
    expect(two.body.results.map((x: { duplicate: boolean }) => x.duplicate)).toEqual([false, true]);
    expect(two.body.results[0].seq).toBe(r[3]!.seq + 1);
    expect(two.body.results[1].seq).toBe(r[1]!.seq);

    const all = await postJson(`${door.url}/events/batch`, [c, a]);
    expect(all.status).toBe(200);
    expect(all.body.results.map((x: { seq: number }) => x.seq)).toEqual([r[3]!.seq, r[0]!.seq]);

    // Each event is in the stream exactly once, in seq order.
    const entries = (await readAll(fx.redis, ingest)).filter((e) =>
      [a, b, c, d].some((x) => x!.event_id === e.text('event_id')),
    );
    expect(entries.map((e) => e.text('event_id'))).toEqual([a, b, c, d].map((x) => x!.event_id));
  });

  it('answers 400 with field-level errors and writes nothing', async () => {
    const before = await fx.redis.xlen(ingest);
    const malformed = await postJson(`${door.url}/events`, '{"event_id": "x",');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toBe('malformed_json');
    expect(malformed.body.errors).toEqual([{ field: '(body)', message: expect.any(String) }]);
    expectRequestId(malformed);

    const empty = await postJson(`${door.url}/events`, {});
    expect(empty.status).toBe(400);
    expect(empty.body.error).toBe('invalid_envelope');
    expect(empty.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(
      ['event_id', 'event_type', 'payload', 'source', 'timestamp', 'version'].sort(),
    );
    expectRequestId(empty);

    const good = spaceCreated(20);
    const illTyped = await postJson(`${door.url}/events`, {
      ...good,
      event_id: '',
      timestamp: 'yesterday',
      version: 0,
      payload: [1, 2],
    });
    expect(illTyped.status).toBe(400);
    const fields = illTyped.body.errors.map((e: { field: string }) => e.field).sort();
    expect(fields).toEqual(['event_id', 'payload', 'timestamp', 'version']);
    for (const e of illTyped.body.errors) expect(e.message).toBeTypeOf('string');

    const longId = await postJson(`${door.url}/events`, { ...good, event_id: 'x'.repeat(129) });
    expect(longId.status).toBe(400);
    expect(longId.body.errors[0].field).toBe('event_id');

    const notArray = await postJson(`${door.url}/events/batch`, good);
    expect(notArray.status).toBe(400);
    expect(notArray.body.errors).toEqual([{ field: '(body)', message: expect.stringContaining('array') }]);
    const none = await postJson(`${door.url}/events/batch`, []);
    expect(none.status).toBe(400);
    expect(none.body.errors[0].message).toContain('got 0');
    const tooMany = await postJson(
      `${door.url}/events/batch`,
      range(6).map((n) => spaceCreated(100 + Number(n))),
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.errors[0].message).toContain('1 to 5');

    // One bad item refuses the whole batch, naming the item.
    const oneBad = await postJson(`${door.url}/events/batch`, [
      spaceCreated(30),
      { ...spaceCreated(31), source: 7 },
    ]);
    expect(oneBad.status).toBe(400);
    expect(oneBad.body.errors).toEqual([{ index: 1, field: 'source', message: expect.any(String) }]);

    expect(await fx.redis.xlen(ingest)).toBe(before);
  });

  it('answers 413 over ATLAS_MAX_BODY_BYTES and 415 for anything but JSON', async () => {
    const big = spaceCreated(40);
    big.payload.padding = 'x'.repeat(9000);
    const tooLarge = await postJson(`${door.url}/events`, big);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error).toBe('body_too_large');
    expect(tooLarge.body.errors).toEqual([{ field: '(body)', message: expect.any(String) }]);
    expectRequestId(tooLarge);

    const text = await request(`${door.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify(spaceCreated(41)),
    });
    expect(text.status).toBe(415);
    expect(text.body.error).toBe('unsupported_media_type');
    expectRequestId(text);

    const form = await request(`${door.url}/events/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'a=1',
    });
    expect(form.status).toBe(415);
    expectRequestId(form);

    const charset = await postJson(`${door.url}/events`, spaceCreated(42), {
      'content-type': 'application/json; charset=utf-8',
    });
    expect(charset.status).toBe(202);
  });

  it('stores a large payload once as a claim-check blob', async () => {
    const event = spaceCreated(50);
    event.payload.note = 'y'.repeat(4000);
    const a = await postJson(`${door.url}/events`, event);
    expect(a.status).toBe(202);
    const [entry] = (await readAll(fx.redis, ingest)).filter((e) => e.id === a.body.id);
    expect(entry!.has('payload')).toBe(false);
    const sha = entry!.text('payload@blob');
    const blob = await fx.redis.getBuffer(fx.keys.blob(sha));
    expect(JSON.parse(blob!.toString())).toEqual(event.payload);
    expect(await fx.redis.hget(fx.keys.blobRefs, sha)).toBe('1');

    // A duplicate with another large payload is not appended, so its blob is not stored either.
    event.payload.note = 'z'.repeat(4000);
    const again = await postJson(`${door.url}/events`, event);
    expect(again.status).toBe(200);
    expect(await fx.redis.hlen(fx.keys.blobRefs)).toBe(1);
    expect(await keysMatching(fx.redis, fx.keys.blob('*'))).toEqual([fx.keys.blob(sha)]);
  });

  it('keeps the caller’s x-request-id and carries one on every answer', async () => {
    const sent = 'req-test-123';
    const a = await postJson(`${door.url}/events`, spaceCreated(60), { 'x-request-id': sent });
    expectRequestId(a, sent);
    const [entry] = (await readAll(fx.redis, ingest)).filter((e) => e.id === a.body.id);
    expect(entry!.text('request_id')).toBe(sent);

    const notFound = await request(`${door.url}/nope`);
    expect(notFound.status).toBe(404);
    expectRequestId(notFound);
    for (const path of ['/health', '/ready']) expectRequestId(await request(`${door.url}${path}`));
    expect((await request(`${door.url}/metrics`)).headers.get('x-request-id')).toBeTruthy();
  });

  it('serves /health, /ready and Prometheus /metrics', async () => {
    const health = await request(`${door.url}/health`);
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('ok');
    const ready = await request(`${door.url}/ready`);
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('ready');
    const metrics = await request(`${door.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    expect(metrics.text).toContain('# TYPE atlas_ingest_events_total counter');
    expect(metrics.text).toMatch(/^atlas_ingest_events_total\{outcome="accepted"\} [1-9]\d*$/m);
    expect(metrics.text).toMatch(/^atlas_ingest_events_total\{outcome="duplicate"\} [1-9]\d*$/m);
    expect(metrics.text).toMatch(/^atlas_ingest_rejected_total\{reason="invalid_envelope"\} [1-9]\d*$/m);
  });
});

describe('many concurrent clients', () => {
  const { prefix, keys } = fx.freshPrefix('door-conc');
  let door: Door;
  beforeAll(async () => {
    door = await startDoor(testConfig(prefix));
  });
  afterAll(() => door.close());

  it('get a dense seq 1..N with no gaps or repeats, in stream order', async () => {
    const clients = 20;
    const each = 50;
    const seqs: number[] = [];
    await Promise.all(
      range(clients).map(async (c) => {
        for (let i = 0; i < each; i++) {
          const event = spaceCreated(Number(c) * 1000 + i);
          // Every tenth request is a retry of the previous one: it must not take a new seq.
          const a = await postJson(`${door.url}/events`, event);
          expect(a.status).toBe(202);
          seqs.push(a.body.seq);
          if (i % 10 === 0) {
            const retry = await postJson(`${door.url}/events`, event);
            expect(retry.status).toBe(200);
            expect(retry.body.seq).toBe(a.body.seq);
          }
        }
      }),
    );
    const n = clients * each;
    expect(numericSort(seqs.map(String))).toEqual(range(n));
    const inStream = (await readAll(fx.redis, keys.stream(streams.ingest))).map((e) => e.text('seq'));
    expect(inStream).toEqual(range(n));
  });
});

describe('requests merged into one script call per event-loop turn', () => {
  const { keys } = fx.freshPrefix('door-merge');
  const context = (n: number) => ({
    traceparent: `00-${'c'.repeat(32)}-${'d'.repeat(16)}-01`,
    requestId: `r${n}`,
  });

  /** Calls and events the door's call-size histogram has counted so far. */
  async function calls(): Promise<{ calls: number; events: number }> {
    const { values } = await ingestMetrics.callEvents.get();
    const of = (name: string) => values.find((v) => v.metricName === name)?.value ?? 0;
    return { calls: of('atlas_ingest_call_events_count'), events: of('atlas_ingest_call_events_sum') };
  }

  it('answers every request as if it were alone, with duplicates across the merged requests', async () => {
    const door = new MergingDoor(
      fx.redis,
      {
        keys,
        dedupWindowS: 60,
        claimCheckBytes: 64 * 1024,
        generation: () => joinedGeneration(fx.redis, keys),
      },
      100,
    );
    const [a, b, c] = [spaceCreated(1), spaceCreated(2), spaceCreated(3)];
    const before = await calls();
    // Handed over in one turn: one call, answered per request in order.
    const answers = await Promise.all([
      door.accept([a], context(1)),
      door.accept([b, a], context(2)),
      door.accept([a], context(3)),
      door.accept([c, b], context(4)),
    ]);
    expect(await calls()).toEqual({ calls: before.calls + 1, events: before.events + 6 });
    const [one, two, three, four] = answers;
    expect(one!.map((r) => [r.event_id, r.duplicate])).toEqual([[a.event_id, false]]);
    expect(two!.map((r) => [r.event_id, r.duplicate])).toEqual([
      [b.event_id, false],
      [a.event_id, true],
    ]);
    expect(three!.map((r) => [r.event_id, r.duplicate])).toEqual([[a.event_id, true]]);
    expect(four!.map((r) => [r.event_id, r.duplicate])).toEqual([
      [c.event_id, false],
      [b.event_id, true],
    ]);
    // Dense seq in the order the requests were handed over; a duplicate names the first.
    expect([one![0]!.seq, two![0]!.seq, four![0]!.seq]).toEqual([1, 2, 3]);
    expect(two![1]).toMatchObject({ seq: 1, id: one![0]!.id });
    expect(four![1]).toMatchObject({ seq: 2, id: two![0]!.id });
    // Each entry carries its own request's id.
    const entries = await readAll(fx.redis, keys.stream(streams.ingest));
    expect(entries.map((e) => [e.text('event_id'), e.text('request_id')])).toEqual([
      [a.event_id, 'r1'],
      [b.event_id, 'r2'],
      [c.event_id, 'r4'],
    ]);
  });

  it('splits a turn into calls of at most the given events, never splitting a request', async () => {
    const door = new MergingDoor(
      fx.redis,
      {
        keys,
        dedupWindowS: 60,
        claimCheckBytes: 64 * 1024,
        generation: () => joinedGeneration(fx.redis, keys),
      },
      3,
    );
    const before = await calls();
    const answers = await Promise.all([
      door.accept([spaceCreated(10), spaceCreated(11)], context(1)),
      door.accept([spaceCreated(12), spaceCreated(13)], context(2)),
      door.accept([spaceCreated(14), spaceCreated(15), spaceCreated(16), spaceCreated(17)], context(3)),
    ]);
    expect(await calls()).toEqual({ calls: before.calls + 3, events: before.events + 8 });
    expect(answers.flat().map((r) => r.seq)).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('fails every request of a refused call, and none of the next turn', async () => {
    const fence = await joinedGeneration(fx.redis, keys);
    let token = 'not-the-generation';
    const door = new MergingDoor(
      fx.redis,
      {
        keys,
        dedupWindowS: 60,
        claimCheckBytes: 64 * 1024,
        generation: async () => ({ key: fence.key, token }),
      },
      100,
    );
    const refused = await Promise.allSettled([
      door.accept([spaceCreated(20)], context(1)),
      door.accept([spaceCreated(21)], context(2)),
    ]);
    for (const r of refused) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StateLostError);
    }
    token = fence.token;
    const [ok] = await door.accept([spaceCreated(20)], context(3));
    expect(ok).toMatchObject({ duplicate: false, seq: 12 });
  });
});

describe('backpressure at the door', () => {
  const { prefix, keys } = fx.freshPrefix('door-bp');
  let door: Door;
  beforeAll(async () => {
    door = await startDoor(testConfig(prefix, { ATLAS_HIGH_WATER: 3 }));
  });
  afterAll(() => door.close());

  it('answers 429 with Retry-After while the ingest backlog is over the mark, 202 again once drained', async () => {
    const stream = keys.stream(streams.ingest);
    await fx.redis.xgroup('CREATE', stream, 'validate', '0', 'MKSTREAM');
    for (let i = 0; i < 4; i++)
      expect((await postJson(`${door.url}/events`, spaceCreated(i))).status).toBe(202);
    // The door looks at the backlog a few times a second.
    await eventually(async () => expect((await request(`${door.url}/ready`)).status).toBe(503), 5000);
    const refused = await postJson(`${door.url}/events`, spaceCreated(99));
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('backpressure');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expectRequestId(refused);
    const notReady = await request(`${door.url}/ready`);
    expect(notReady.status).toBe(503);
    expect(notReady.body.reason).toContain('high-water');
    expect(await fx.redis.xlen(stream)).toBe(4);

    // A consumer catches up: the door opens again.
    expect(await consumeAll(fx.redis, stream, 'validate')).toHaveLength(4);
    await eventually(async () => expect((await request(`${door.url}/ready`)).status).toBe(200), 5000);
    expect((await postJson(`${door.url}/events`, spaceCreated(99))).status).toBe(202);
  });
});

describe('the door without Redis', () => {
  it('answers 503 within a second when Redis goes away, and /ready says so', async () => {
    const scratch = await startScratchRedis();
    const config = testConfig('door-down', { REDIS_URL: scratch.url });
    const door = await startDoor(config);
    try {
      const ok = await postJson(`${door.url}/events`, spaceCreated(1));
      expect(ok.status).toBe(202);
      expect(ok.body.seq).toBe(1);

      // A hung Redis: connections stay open, nothing answers.
      scratch.pause();
      const hung = await postJson(`${door.url}/events`, spaceCreated(2));
      expect(hung.status).toBe(503);
      expect(hung.ms).toBeLessThan(1000);
      expect(hung.body.error).toBe('unavailable');
      expect(hung.headers.get('retry-after')).toBeTruthy();
      expectRequestId(hung);
      const hungReady = await request(`${door.url}/ready`);
      expect(hungReady.status).toBe(503);
      expect(hungReady.ms).toBeLessThan(1000);
      expect(hungReady.body.reason).toBe('redis unreachable');
      scratch.resume();
      await eventually(async () => expect((await request(`${door.url}/ready`)).status).toBe(200), 10_000);

      // A dead Redis.
      await scratch.stop();
      for (const path of ['/events', '/events/batch']) {
        const body = path === '/events' ? spaceCreated(3) : [spaceCreated(4)];
        const down = await postJson(`${door.url}${path}`, body);
        expect(down.status).toBe(503);
        expect(down.ms).toBeLessThan(1000);
        expectRequestId(down);
      }
      const ready = await request(`${door.url}/ready`);
      expect(ready.status).toBe(503);
      expect(ready.ms).toBeLessThan(1000);
      // Liveness does not depend on Redis; the door still refuses bad input with 400.
      expect((await request(`${door.url}/health`)).status).toBe(200);
      expect((await postJson(`${door.url}/events`, {})).status).toBe(400);
    } finally {
      await door.close();
      await scratch.stop();
    }
  });

  it('answers 503 within a second when Redis was never reachable', async () => {
    const port = await freePort();
    const door = await startDoor(testConfig('door-never', { REDIS_URL: `redis://127.0.0.1:${port}` }), {
      waitForRedis: false,
    });
    try {
      const a = await postJson(`${door.url}/events`, spaceCreated(1) as Envelope);
      expect(a.status).toBe(503);
      expect(a.ms).toBeLessThan(1000);
      expect((await request(`${door.url}/ready`)).status).toBe(503);
    } finally {
      await door.close();
    }
  });
});

// Keys of this file's prefixes are removed by useRedis; make sure the helper agrees on names.
it('uses the pipeline key layout', () => {
  expect(keysFor('p').stream(streams.ingest)).toBe('{p}:ingest');
});
