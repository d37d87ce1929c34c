/** The image's HEALTHCHECK script against a real door with bearer tokens. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newToken } from '../../pipeline/auth.ts';
import { testConfig } from '../support/config.ts';
import { type Door, request, startDoor } from '../support/http.ts';
import { ROOT } from '../support/processes.ts';
import { freePort, useRedis } from '../support/redis.ts';

const fx = useRedis('healthcheck');
const SCRIPT = join(ROOT, 'ops', 'cli', 'healthcheck.ts');
const { token, entry } = newToken('health');

/** The script's exit code and stderr, with only the given settings in its environment. */
async function healthcheck(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  return promisify(execFile)(process.execPath, [SCRIPT], { env })
    .then(({ stderr }) => ({ code: 0, stderr }))
    .catch((err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }));
}

describe('the container healthcheck', () => {
  let door: Door;
  let port: string;
  beforeAll(async () => {
    door = await startDoor(testConfig(fx.prefix, { ATLAS_AUTH_TOKENS: entry }));
    port = new URL(door.url).port;
  });
  afterAll(() => door.close());

  it("follows the door's /ready, asked with the health token", async () => {
    const ready = await request(`${door.url}/ready`, { headers: { authorization: `Bearer ${token}` } });
    const result = await healthcheck({ ATLAS_HTTP_PORT: port, ATLAS_HEALTH_TOKEN: token });
    expect(result.code, result.stderr).toBe(ready.status === 200 ? 0 : 1);
  });

  it('fails, saying why, without the token the door wants', async () => {
    const result = await healthcheck({ ATLAS_HTTP_PORT: port });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/\/ready answered 401/);
  });

  it('fails when nothing listens', async () => {
    const result = await healthcheck({ ATLAS_HTTP_PORT: String(await freePort()) });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/\/ready did not answer/);
  });
});
