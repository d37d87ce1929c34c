import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../pipeline/auth.ts';
import { parseConfig } from '../../pipeline/config.ts';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { spaceCreated } from '../support/events.ts';
import { type Door, postJson, request, startDoor } from '../support/http.ts';
import { runAtlas, spawnAtlas } from '../support/processes.ts';
import { freePort, uniquePrefix, useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('auth');

const entry = (name: string, token: string, rate?: number) =>
  `${name}:${sha256(token).toString('hex')}${rate === undefined ? '' : `:${rate}`}`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('the door with bearer tokens', () => {
  let door: Door;
  const ingest = fx.keys.stream(streams.ingest);
  beforeAll(async () => {
    door = await startDoor(
      testConfig(fx.prefix, {
        ATLAS_AUTH_TOKENS: [entry('loader', 'secret-one'), entry('slow', 'secret-two', 2)].join(','),
      }),
    );
  });
  afterAll(() => door.close());

  it('answers 401 with a Bearer challenge and a JSON error without a token or with a wrong one', async () => {
    const before = await fx.redis.xlen(ingest).catch(() => 0);
    for (const headers of [
      {},
      bearer('nope'),
      { authorization: 'Basic c2VjcmV0LW9uZQ==' },
      bearer('secret-one2'),
      bearer(''),
    ]) {
      const a = await postJson(`${door.url}/events`, spaceCreated(1), headers);
      expect(a.status).toBe(401);
      expect(a.body).toMatchObject({ error: 'unauthorized', message: expect.any(String) });
      expect(a.body.request_id).toBe(a.headers.get('x-request-id'));
      expect(a.headers.get('www-authenticate')).toMatch(/^Bearer realm="atlas"/);
    }
    const missing = await postJson(`${door.url}/events`, spaceCreated(1));
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="atlas"');
    const wrong = await postJson(`${door.url}/events`, spaceCreated(1), bearer('nope'));
    expect(wrong.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(await fx.redis.xlen(ingest).catch(() => 0)).toBe(before);
  });

  it('accepts events with any configured token, batches too', async () => {
    const one = await postJson(`${door.url}/events`, spaceCreated(2), bearer('secret-one'));
    expect(one.status).toBe(202);
    const two = await postJson(`${door.url}/events/batch`, [spaceCreated(3)], bearer('secret-two'));
    expect(two.status).toBe(202);
    const ids = (await readAll(fx.redis, ingest)).map((e) => e.id);
    expect(ids).toContain(one.body.id);
    expect(ids).toContain(two.body.results[0].id);
  });

  it('keeps /health open and /ready and /metrics behind the token', async () => {
    expect((await request(`${door.url}/health`)).status).toBe(200);
    for (const path of ['/ready', '/metrics']) {
      expect((await request(`${door.url}${path}`)).status).toBe(401);
      expect((await request(`${door.url}${path}`, { headers: bearer('secret-one') })).status).toBe(200);
    }
  });

  it('answers 429 with Retry-After over a token’s rate, without touching other tokens', async () => {
    const answers = [];
    for (let i = 0; i < 6; i++)
      answers.push(await postJson(`${door.url}/events`, spaceCreated(100 + i), bearer('secret-two')));
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited[0]!.body).toMatchObject({
      error: 'rate_limited',
      message: expect.stringContaining('slow'),
    });
    expect(Number(limited[0]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // The unlimited token is not held back by the other's bucket.
    expect((await postJson(`${door.url}/events`, spaceCreated(200), bearer('secret-one'))).status).toBe(202);
    // One second later the bucket has refilled.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await postJson(`${door.url}/events`, spaceCreated(201), bearer('secret-two'))).status).toBe(202);
  });
});

describe('binding and token settings', () => {
  it('binds loopback by default and refuses another address without tokens', () => {
    expect(parseConfig({}).ATLAS_HTTP_HOST).toBe('127.0.0.1');
    expect(() => parseConfig({ ATLAS_HTTP_HOST: '0.0.0.0' })).toThrow(
      /ATLAS_HTTP_HOST=0\.0\.0\.0: is not a loopback/,
    );
    expect(() => parseConfig({ ATLAS_HTTP_HOST: '::1' })).not.toThrow();
    const withToken = parseConfig({ ATLAS_HTTP_HOST: '0.0.0.0', ATLAS_AUTH_TOKENS: entry('a', 'x') });
    expect(withToken.ATLAS_AUTH_TOKENS).toEqual([{ name: 'a', sha256: sha256('x'), ratePerSecond: 0 }]);
  });

  it('refuses malformed token entries without echoing them', () => {
    let message = '';
    try {
      parseConfig({ ATLAS_AUTH_TOKENS: `ok:${'a'.repeat(64)},raw-token-pasted,ok:${'b'.repeat(64)}` });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('entries 2 are not name:sha256hex');
    expect(message).toContain('token names used twice: ok');
    expect(message).not.toContain('raw-token-pasted');
  });

  it('exits 2 with a message when the door would be open to the network', async () => {
    const r = await runAtlas(['run', 'ingest'], {
      ATLAS_PREFIX: uniquePrefix('auth'),
      ATLAS_HTTP_HOST: '0.0.0.0',
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'ATLAS_HTTP_HOST=0.0.0.0: is not a loopback address and ATLAS_AUTH_TOKENS is empty',
    );
  });

  it('atlas token new prints a token once and the entry that makes the door accept it', async () => {
    const r = await runAtlas(['token', 'new', 'ci', '--rate', '50'], {});
    expect(r.code).toBe(0);
    const token = /token \(shown once.*\): (\S+)/.exec(r.stdout)?.[1];
    const line = /^ {2}(ci:[0-9a-f]{64}:50)$/m.exec(r.stdout)?.[1];
    expect(token).toMatch(/^atlas_[\w-]{43}$/);
    expect(line).toBe(entry('ci', token!, 50));
    const { prefix } = fx.freshPrefix('auth-cli');
    const door = await startDoor(testConfig(prefix, { ATLAS_AUTH_TOKENS: line! }));
    try {
      expect((await postJson(`${door.url}/events`, spaceCreated(1), bearer(token!))).status).toBe(202);
    } finally {
      await door.close();
    }
  });
});

describe("every process's operator listener with bearer tokens", () => {
  it('keeps /health open and wants a token for /ready and /metrics', async () => {
    const ops = await freePort();
    const stage = spawnAtlas(['run', 'validate'], {
      ATLAS_PREFIX: fx.freshPrefix('auth-ops').prefix,
      ATLAS_AUTH_TOKENS: entry('scraper', 'secret-ops'),
      ATLAS_METRICS_PORT: String(ops),
    });
    await stage.waitForLog('operator listener up');
    const url = `http://127.0.0.1:${ops}`;
    expect((await request(`${url}/health`)).status).toBe(200);
    for (const path of ['/ready', '/metrics']) {
      const refused = await request(`${url}${path}`);
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="atlas"');
      expect((await request(`${url}${path}`, { headers: bearer('secret-ops') })).status).toBe(200);
    }
    await stage.kill9();
  });
});
