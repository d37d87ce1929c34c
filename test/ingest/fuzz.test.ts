/**
 * A bounded fuzz of the door (fast-check): random bytes, deep nesting, huge strings, lone
 * surrogates, wrong types in every envelope and payload field, wrong content types, batches,
 * wrong or missing tokens. Every answer must be a 2xx or 4xx with a JSON body (never a 5xx
 * while Redis is up), the door must stay up, and every accepted event must be in the stream.
 * A few seconds by default; ATLAS_FUZZ_RUNS and ATLAS_FUZZ_SECONDS make it a longer run.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../pipeline/auth.ts';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { spaceCreated } from '../support/events.ts';
import { capturingLog, type Door, request, startDoor } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const RUNS = Number(process.env.ATLAS_FUZZ_RUNS ?? 400);
const SECONDS = Number(process.env.ATLAS_FUZZ_SECONDS ?? 8);
const TOKEN = 'fuzz-token';
const MAX_DEPTH = 32;

const fx = useRedis('fuzz');

/** One request the fuzzer sends, and what kind of hostility it carries (for the tally). */
interface Shot {
  kind: string;
  method: string;
  path: string;
  contentType: string | undefined;
  auth: 'good' | 'none' | 'wrong';
  body: string | Uint8Array;
}

/** A value that, once stringified, is replaced by the text of a deeply nested one. */
const DEEP = '@@deep@@';
const DEEP_JSON = JSON.stringify(DEEP);
const nestedText = (depth: number, open: string, close: string) =>
  `${open.repeat(depth)}${close.repeat(depth)}`;

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const badUnicode = fc
  .tuple(fc.string({ maxLength: 8 }), loneSurrogate, fc.string({ maxLength: 8 }))
  .map(([a, s, b]) => a + s + b);
const hugeString = fc.integer({ min: 5_000, max: 200_000 }).map((n) => 'h'.repeat(n));
const depth = fc.integer({ min: 2, max: 20_000 });
const wrongValue = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -(2 ** 53), max: 2 ** 53 }),
  fc.double(),
  fc.string({ maxLength: 40 }),
  badUnicode,
  hugeString,
  fc.array(fc.integer(), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
  fc.constant(DEEP),
);
const fieldPaths = [
  'event_id',
  'event_type',
  'source',
  'timestamp',
  'version',
  'payload',
  'payload.space_id',
  'payload.topic_id',
  'payload.space_type',
  'payload.space_type.kind',
  'payload.space_type.owner',
  'payload.meta',
  'payload.meta.block_number',
  'payload.meta.tx_hash',
  'extra',
] as const;
const mutation = fc.record({
  path: fc.constantFrom(...fieldPaths),
  remove: fc.nat(4).map((n) => n === 0), // one in five mutations deletes the field
  value: wrongValue,
});

function setPath(target: Record<string, unknown>, path: string, value: unknown, remove: boolean): void {
  const parts = path.split('.');
  let at: Record<string, unknown> = target;
  for (const p of parts.slice(0, -1)) {
    if (typeof at[p] !== 'object' || at[p] === null) return; // an earlier mutation replaced the parent
    at = at[p] as Record<string, unknown>;
  }
  const last = parts[parts.length - 1]!;
  if (remove) delete at[last];
  else at[last] = value;
}

/** An envelope, valid or with up to three fields broken; the text may splice in deep nesting. */
const envelopeText = fc
  .tuple(fc.uuid(), fc.nat(1_000_000), fc.array(mutation, { maxLength: 3 }), depth, fc.boolean())
  .map(([id, n, mutations, d, arrays]) => {
    const envelope = spaceCreated(n, { event_id: id }) as unknown as Record<string, unknown>;
    for (const m of mutations) setPath(envelope, m.path, m.value, m.remove);
    return {
      broken: mutations.length,
      text: JSON.stringify(envelope).replaceAll(
        DEEP_JSON,
        arrays ? nestedText(d, '[', ']') : nestedText(d, '{"a":', '}'),
      ),
    };
  });

const contentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant('application/json') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      undefined,
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/jsonx',
      'application/JSON',
      '*/*',
    ),
  },
);
const auth = fc.oneof(
  { weight: 9, arbitrary: fc.constant('good' as const) },
  { weight: 1, arbitrary: fc.constantFrom('none' as const, 'wrong' as const) },
);

const bodies = fc.oneof(
  envelopeText.map((e) => ({
    kind: e.broken > 0 ? 'broken envelope' : 'envelope',
    path: '/events',
    body: e.text,
  })),
  fc.array(envelopeText, { maxLength: 25 }).map((items) => ({
    kind: 'batch',
    path: '/events/batch',
    body: `[${items.map((e) => e.text).join(',')}]`,
  })),
  fc.uint8Array({ maxLength: 4000 }).map((b) => ({ kind: 'random bytes', path: '/events', body: b })),
  fc.tuple(depth, fc.boolean(), fc.constantFrom('/events', '/events/batch')).map(([d, arrays, path]) => ({
    kind: 'deep nesting',
    path,
    body: arrays ? nestedText(d, '[', ']') : nestedText(d, '{"a":', '}'),
  })),
  // Deep nesting inside an otherwise valid envelope's payload: the body a parser walks furthest.
  fc.tuple(fc.uuid(), depth, fc.boolean()).map(([id, d, arrays]) => {
    const envelope = spaceCreated(1, { event_id: id });
    envelope.payload.deep = DEEP;
    return {
      kind: 'deep payload',
      path: '/events',
      body: JSON.stringify(envelope).replace(
        DEEP_JSON,
        arrays ? nestedText(d, '[', ']') : nestedText(d, '{"a":', '}'),
      ),
    };
  }),
  fc
    .jsonValue({ maxDepth: 4 })
    .map((v) => ({ kind: 'random JSON', path: '/events', body: JSON.stringify(v) ?? 'null' })),
  fc.tuple(fc.constantFrom('event_id', 'source', 'payload'), hugeString).map(([field, s]) => ({
    kind: 'huge string',
    path: '/events',
    body: JSON.stringify({ ...spaceCreated(1), [field]: field === 'payload' ? { s } : s }),
  })),
);

const shots: fc.Arbitrary<Shot> = fc
  .tuple(
    bodies,
    contentType,
    auth,
    fc.oneof(
      { weight: 9, arbitrary: fc.constant('POST') },
      { weight: 1, arbitrary: fc.constantFrom('PUT', 'DELETE') },
    ),
  )
  .map(([b, ct, a, method]) => ({ ...b, contentType: ct, auth: a, method }));

const ALLOWED = new Set([200, 202, 400, 401, 404, 413, 415, 429]);

describe('fuzzing the door', () => {
  let door: Door;
  const captured = capturingLog();
  const tally = new Map<string, number>();
  const accepted = new Set<number>();
  let sent = 0;
  beforeAll(async () => {
    door = await startDoor(
      testConfig(fx.prefix, {
        ATLAS_AUTH_TOKENS: `fuzz:${sha256(TOKEN).toString('hex')}`,
        ATLAS_MAX_BODY_BYTES: 128 * 1024,
        ATLAS_MAX_BATCH_EVENTS: 20,
        ATLAS_MAX_JSON_DEPTH: MAX_DEPTH,
        ATLAS_CLAIM_CHECK_BYTES: 4096,
      }),
      { log: captured.log },
    );
  });
  afterAll(async () => {
    await door.close();
    const rows = [...tally.entries()].sort(([a], [b]) => a.localeCompare(b));
    console.log(
      `door fuzz: ${sent} requests, ${accepted.size} events accepted\n${rows.map(([k, n]) => `  ${k}: ${n}`).join('\n')}`,
    );
  });

  it(
    'answers every request with a 2xx or 4xx JSON body and loses nothing it accepted',
    async () => {
      const headersOf = (shot: Shot): Record<string, string> => ({
        ...(shot.contentType ? { 'content-type': shot.contentType } : {}),
        ...(shot.auth === 'good' ? { authorization: `Bearer ${TOKEN}` } : {}),
        ...(shot.auth === 'wrong' ? { authorization: 'Bearer not-the-token' } : {}),
      });
      await fc.assert(
        fc.asyncProperty(shots, async (shot) => {
          const a = await request(`${door.url}${shot.path}`, {
            method: shot.method,
            headers: headersOf(shot),
            body: shot.body as RequestInit['body'],
          });
          sent++;
          const key = `${shot.kind} → ${a.status}`;
          tally.set(key, (tally.get(key) ?? 0) + 1);
          expect(ALLOWED.has(a.status), `${a.status} ${a.text.slice(0, 300)}`).toBe(true);
          expect(a.headers.get('content-type')).toContain('application/json');
          expect(typeof a.body).toBe('object');
          expect(a.body.request_id).toBe(a.headers.get('x-request-id'));
          if (a.status === 202 || a.status === 200) {
            const results = shot.path === '/events' ? [a.body] : a.body.results;
            for (const r of results) accepted.add(r.seq);
          } else expect(a.body.error).toBeTypeOf('string');
        }),
        { numRuns: RUNS, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false },
      );
      expect(sent).toBeGreaterThan(50);
      expect((await request(`${door.url}/health`)).status).toBe(200);
      // Every seq the door answered with is an entry of the ingest stream.
      const inStream = new Set(
        (await readAll(fx.redis, fx.keys.stream(streams.ingest))).map((e) => Number(e.text('seq'))),
      );
      expect([...accepted].filter((seq) => !inStream.has(seq))).toEqual([]);
      expect(captured.lines.filter((l) => l.level >= 50)).toEqual([]);
    },
    SECONDS * 1000 + 30_000,
  );
});
