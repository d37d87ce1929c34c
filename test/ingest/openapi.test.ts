/**
 * /openapi.json: open without a token, the shape of an OpenAPI 3.1 document with the door's
 * routes, every $ref resolving, and schemas that agree with the door's own checks on samples.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newToken } from '../../pipeline/auth.ts';
import { checkEnvelope } from '../../stages/ingest/envelope.ts';
import { testConfig } from '../support/config.ts';
import { spaceCreated, trustExtended } from '../support/events.ts';
import { type Door, type Json, postJson, request, startDoor } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('openapi');
const { token, entry } = newToken('openapi-test');
const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as {
  version: string;
};

/** Strict, but `type: [number, string]` (a u64 as either) is plain JSON Schema 2020-12. */
const newAjv = (opts: { allErrors?: boolean } = {}) =>
  new Ajv2020({ strict: true, allowUnionTypes: true, ...opts });

/** Every `$ref` in a value, depth first. */
function refs(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(refs);
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => (k === '$ref' && typeof v === 'string' ? [v] : refs(v)));
}

function resolve(doc: Json, ref: string): unknown {
  expect(ref.startsWith('#/')).toBe(true);
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((at, key) => (at as Json | undefined)?.[key], doc);
}

describe('the OpenAPI document of the door', () => {
  let door: Door;
  let doc: Json;
  beforeAll(async () => {
    door = await startDoor(testConfig(fx.prefix, { ATLAS_AUTH_TOKENS: entry, ATLAS_MAX_BATCH_EVENTS: 7 }));
    const answer = await request(`${door.url}/openapi.json`);
    expect(answer.status).toBe(200);
    doc = answer.body;
  });
  afterAll(() => door.close());

  it('is served without a token, as OpenAPI 3.1 with the package version', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: expect.any(String), version });
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('describes the routes of the door and their answers', () => {
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/events',
      '/events/batch',
      '/health',
      '/openapi.json',
      '/ready',
      '/subscribe',
      '/subscribe/ack',
    ]);
    for (const path of ['/events', '/events/batch']) {
      const post = doc.paths[path].post;
      expect(post.requestBody.content['application/json'].schema).toBeDefined();
      expect(post.requestBody.content['application/x-protobuf'].schema).toMatchObject({ format: 'binary' });
      expect(Object.keys(post.responses).sort()).toEqual([
        '200',
        '202',
        '400',
        '401',
        '413',
        '415',
        '429',
        '503',
      ]);
      expect(post.responses['429'].headers['Retry-After']).toBeDefined();
    }
    expect(doc.paths['/events/batch'].post.requestBody.content['application/json'].schema).toMatchObject({
      type: 'array',
      items: { $ref: '#/components/schemas/Envelope' },
      minItems: 1,
      maxItems: 7,
    });
    expect(doc.paths['/health'].get.security).toEqual([]);
    expect(Object.keys(doc.paths['/ready'].get.responses).sort()).toEqual(['200', '401', '503']);
  });

  it('resolves every $ref', () => {
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(10);
    for (const ref of all) expect(resolve(doc, ref), ref).toBeDefined();
  });

  it('has an envelope schema that agrees with the door on valid and invalid envelopes', () => {
    const ajv = newAjv({ allErrors: true });
    const valid = ajv.compile(doc.components.schemas.Envelope);
    const good = spaceCreated(1);
    const samples = [
      good,
      trustExtended(1, 2),
      { ...good, extra: 'ignored' },
      { ...good, event_id: '' },
      { ...good, event_id: 'x'.repeat(129) },
      { ...good, source: undefined },
      { ...good, timestamp: -1 },
      { ...good, timestamp: 1.5 },
      { ...good, version: 0 },
      { ...good, payload: [] },
      { ...good, payload: 'text' },
      'not an object',
    ];
    for (const sample of samples) {
      const door = !('errors' in checkEnvelope(sample));
      expect(valid(sample), JSON.stringify(sample).slice(0, 80)).toBe(door);
    }
    expect(valid(good)).toBe(true);
  });

  it('has payload schemas per event type that take the samples the pipeline takes', () => {
    const ajv = newAjv();
    const payloads = doc.components.schemas.payloads.properties;
    expect(Object.keys(payloads).sort()).toEqual([
      'space.created.v1',
      'space.trust_extended.v1',
      'space.trust_revoked.v1',
    ]);
    const created = ajv.compile(payloads['space.created.v1']);
    expect(created(spaceCreated(1).payload)).toBe(true);
    const { space_id: _, ...missing } = spaceCreated(1).payload;
    expect(created(missing)).toBe(false);
    expect(ajv.compile(payloads['space.trust_extended.v1'])(trustExtended(1, 2).payload)).toBe(true);
  });

  it('describes answers the door really gives', async () => {
    const ajv = newAjv();
    for (const [name, schema] of Object.entries(doc.components.schemas as Record<string, object>))
      if (name !== 'payloads') ajv.addSchema(schema, `#/components/schemas/${name}`);
    const auth = { authorization: `Bearer ${token}` };
    const event = spaceCreated(5);
    const one = await postJson(`${door.url}/events`, event, auth);
    expect(one.status).toBe(202);
    expect(ajv.validate('#/components/schemas/Accepted', one.body), ajv.errorsText()).toBe(true);
    const batch = await postJson(`${door.url}/events/batch`, [event, spaceCreated(6)], auth);
    expect(ajv.validate('#/components/schemas/BatchAccepted', batch.body), ajv.errorsText()).toBe(true);
    const bad = await postJson(`${door.url}/events/batch`, [event, { ...event, version: 0 }], auth);
    expect(bad.status).toBe(400);
    expect(ajv.validate('#/components/schemas/Error', bad.body), ajv.errorsText()).toBe(true);
    const health = await request(`${door.url}/health`);
    expect(ajv.validate('#/components/schemas/Health', health.body), ajv.errorsText()).toBe(true);
    const ready = await request(`${door.url}/ready`, { headers: auth });
    expect(ajv.validate('#/components/schemas/Ready', ready.body), ajv.errorsText()).toBe(true);
  });
});
