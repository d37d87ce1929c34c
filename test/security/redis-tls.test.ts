/**
 * The pipeline over rediss:// against the real TLS-only redis-server of `ops/services up
 * redis-tls`: the door accepts, validate validates; a client that does not trust the server's
 * CA is refused with a clear message that quotes no secret.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { connectWorker, type Redis } from '../../pipeline/redis.ts';
import { spaceCreated } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { postJson } from '../support/http.ts';
import { killChildren, runAtlas, spawnAtlas } from '../support/processes.ts';
import { cleanup, freePort, uniquePrefix } from '../support/redis.ts';
import { unrelatedCa, upService } from '../support/secure-services.ts';

const PASSWORD = 'tls-test-Secret-77';
let tls: { REDIS_URL: string; REDIS_TLS_CA_FILE: string };
let redis: Redis;
const prefix = uniquePrefix('tls');

beforeAll(async () => {
  const printed = await upService('redis-tls');
  tls = { REDIS_URL: printed.REDIS_URL!, REDIS_TLS_CA_FILE: printed.REDIS_TLS_CA_FILE! };
  expect(tls.REDIS_URL).toMatch(/^rediss:\/\//);
  redis = connectWorker(tls, 'atlas-test', createLogger('silent'));
  await redis.ping();
});

afterAll(async () => {
  await cleanup(redis, prefix);
  redis.disconnect();
});

afterEach(() => killChildren());

describe('Redis over TLS', () => {
  it('the door and validate run over rediss:// with a private CA', async () => {
    const port = await freePort();
    const pipeline = spawnAtlas(['run', 'ingest', 'validate'], {
      ...tls,
      ATLAS_PREFIX: prefix,
      ATLAS_HTTP_PORT: String(port),
      ATLAS_HTTP_HOST: '127.0.0.1',
    });
    await pipeline.waitForLog('ingest listening');
    const answer = await postJson(`http://127.0.0.1:${port}/events`, spaceCreated(1));
    expect(answer.status).toBe(202);
    await eventually(async () => (await redis.xlen(keys(prefix).stream('validated'))) === 1, 15_000);
    expect((await pipeline.term()).code).toBe(0);
    expect(pipeline.stderr).toBe('');
  });

  it('a client that does not trust the CA is refused, clearly and without the password', async () => {
    const ca = await unrelatedCa(mkdtempSync(join(tmpdir(), 'atlas-ca-')));
    const url = tls.REDIS_URL.replace('rediss://', `rediss://default:${PASSWORD}@`);
    const r = await runAtlas(['streams'], { REDIS_URL: url, REDIS_TLS_CA_FILE: ca, ATLAS_PREFIX: prefix });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /cannot reach Redis at rediss:\/\/default:\*\*\*@127\.0\.0\.1:\d+: .*certificate/,
    );
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

  it('a plain redis:// client on the TLS port gets no answer it could mistake for Redis', async () => {
    const url = tls.REDIS_URL.replace('rediss://', 'redis://');
    const r = await runAtlas(['streams'], { REDIS_URL: url, ATLAS_PREFIX: prefix });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot reach Redis at redis://127.0.0.1');
  });
});
