/** Bodies built to hurt: deep nesting and ids that are not well-formed Unicode. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nestsDeeperThan } from '../../stages/ingest/json-depth.ts';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { spaceCreated } from '../support/events.ts';
import { capturingLog, type Door, postJson, startDoor } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('hostile');

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

describe('nesting depth', () => {
  it('counts arrays and objects, not brackets inside strings', () => {
    expect(nestsDeeperThan('{"a":[1,{"b":2}]}', 3)).toBe(false);
    expect(nestsDeeperThan('{"a":[1,{"b":[2]}]}', 3)).toBe(true);
    expect(nestsDeeperThan(`{"s":"${'['.repeat(100)}"}`, 2)).toBe(false);
    expect(nestsDeeperThan(`{"s":"a\\"[[[[\\\\","t":[[[]]]}`, 3)).toBe(true);
    expect(nestsDeeperThan(`{"s":"a\\\\"}`, 1)).toBe(false);
    expect(nestsDeeperThan('"unterminated [[[[', 1)).toBe(false);
  });
});

describe('the door and hostile bodies', () => {
  let door: Door;
  const captured = capturingLog();
  const ingest = fx.keys.stream(streams.ingest);
  beforeAll(async () => {
    door = await startDoor(testConfig(fx.prefix, { ATLAS_MAX_JSON_DEPTH: 16 }), { log: captured.log });
  });
  afterAll(() => door.close());

  it('answers 400 with a field error, not 500, for deeply nested bodies, and logs no error', async () => {
    const deepPayload = spaceCreated(1);
    const deep = `${JSON.stringify(deepPayload).slice(0, -2)},"x":${nested(5000)}}}`;
    for (const body of [
      nested(5000),
      nested(100_000),
      deep,
      `{"payload":${'{"a":'.repeat(20)}1${'}'.repeat(20)}}`,
    ]) {
      const a = await postJson(`${door.url}/events`, body);
      expect(a.status).toBe(400);
      expect(a.body).toMatchObject({
        error: 'too_deep',
        errors: [{ field: '(body)', message: 'JSON nested deeper than 16 levels' }],
      });
      expect((await postJson(`${door.url}/events/batch`, `[${body}]`)).status).toBe(400);
    }
    // Within the limit, nesting inside the payload is fine.
    const fine = spaceCreated(2);
    fine.payload.extra = JSON.parse(nested(10));
    expect((await postJson(`${door.url}/events`, fine)).status).toBe(202);
    expect(captured.lines.filter((l) => l.level >= 50)).toEqual([]);
  });

  it('refuses ids with lone UTF-16 surrogates instead of letting them collide', async () => {
    const before = await fx.redis.xlen(ingest);
    // Two ids that differ only in a lone surrogate would both become "evt-\uFFFD" in Redis.
    for (const id of ['evt-\uD800', 'evt-\uDFFF', '\uDC00x\uD83D']) {
      const a = await postJson(`${door.url}/events`, { ...spaceCreated(3), event_id: id });
      expect(a.status).toBe(400);
      expect(a.body.error).toBe('invalid_envelope');
      expect(a.body.errors).toEqual([
        { field: 'event_id', message: expect.stringContaining('well-formed Unicode') },
      ]);
    }
    for (const field of ['event_type', 'source']) {
      const a = await postJson(`${door.url}/events/batch`, [{ ...spaceCreated(4), [field]: 'a\uD800' }]);
      expect(a.status).toBe(400);
      expect(a.body.errors).toEqual([{ index: 0, field, message: expect.stringContaining('well-formed') }]);
    }
    expect(await fx.redis.xlen(ingest)).toBe(before);
    // A surrogate pair is a real character: accepted, and kept distinct from its neighbour.
    const pair = await postJson(`${door.url}/events`, { ...spaceCreated(5), event_id: 'evt-\uD83D\uDE00' });
    const other = await postJson(`${door.url}/events`, { ...spaceCreated(6), event_id: 'evt-\uD83D\uDE01' });
    expect([pair.status, other.status]).toEqual([202, 202]);
    expect(other.body.seq).toBe(pair.body.seq + 1);
  });
});
