/** The door against a Redis near its maxmemory, and its warning about an unsafe Redis. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../support/config.ts';
import { spaceCreated } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { capturingLog, type Door, postJson, request, startDoor } from '../support/http.ts';
import { connect, type ScratchRedis, startScratchRedis } from '../support/redis.ts';

describe('the door near Redis maxmemory', () => {
  let scratch: ScratchRedis;
  let door: Door;
  const captured = capturingLog();
  beforeAll(async () => {
    scratch = await startScratchRedis();
    const admin = connect(scratch.url);
    await admin.config('SET', 'maxmemory', '64mb');
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    admin.disconnect();
    door = await startDoor(
      testConfig('memory', {
        REDIS_URL: scratch.url,
        ATLAS_REDIS_MEMORY_LIMIT_PERCENT: 40,
        ATLAS_REDIS_MEMORY_REFRESH_MS: 100,
      }),
      { log: captured.log },
    );
  });
  afterAll(async () => {
    await door?.close();
    await scratch?.stop();
  });

  it('answers 429 with Retry-After above the share of maxmemory, and 202 again below it', async () => {
    expect((await postJson(`${door.url}/events`, spaceCreated(1))).status).toBe(202);
    const admin = connect(scratch.url);
    try {
      // Over 40% of 64 MB, in pieces (one large SET would itself need room for its argument).
      for (let i = 0; i < 8; i++) await admin.set(`ballast-${i}`, Buffer.alloc(4 * 1024 * 1024, i));
      await eventually(
        async () => expect((await postJson(`${door.url}/events`, spaceCreated(2))).status).toBe(429),
        5000,
      );
      const refused = await postJson(`${door.url}/events/batch`, [spaceCreated(3)]);
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ error: 'redis_memory', message: expect.stringContaining('40%') });
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const ready = await request(`${door.url}/ready`);
      expect(ready.status).toBe(503);
      expect(ready.body.reason).toMatch(/Redis memory at \d+% of maxmemory/);
      expect((await request(`${door.url}/health`)).status).toBe(200);
      await admin.del(...Array.from({ length: 8 }, (_, i) => `ballast-${i}`));
      await eventually(
        async () => expect((await postJson(`${door.url}/events`, spaceCreated(2))).status).toBe(202),
        5000,
      );
    } finally {
      admin.disconnect();
    }
    // A safe Redis gives no warning.
    expect(captured.lines.filter((l) => l.level === 40)).toEqual([]);
  });
});

describe('the warning about an unsafe Redis', () => {
  for (const [setting, value, says] of [
    ['maxmemory', '0', 'no maxmemory'],
    ['maxmemory-policy', 'allkeys-lru', 'maxmemory-policy is allkeys-lru'],
  ] as const) {
    it(`is one warn line at start when ${setting} is ${value}`, async () => {
      const scratch = await startScratchRedis();
      const admin = connect(scratch.url);
      await admin.config('SET', 'maxmemory', '64mb');
      await admin.config('SET', setting, value);
      admin.disconnect();
      const captured = capturingLog();
      const door = await startDoor(
        testConfig('memory-warn', { REDIS_URL: scratch.url, ATLAS_REDIS_MEMORY_REFRESH_MS: 50 }),
        { log: captured.log },
      );
      try {
        await new Promise((r) => setTimeout(r, 400)); // several refreshes
        const warnings = captured.lines.filter((l) => l.level === 40);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]!.msg).toContain(says);
      } finally {
        await door.close();
        await scratch.stop();
      }
    });
  }
});

describe('a Redis that refuses a write for want of memory', () => {
  it('is a 429 like the memory guard, not a 500, and nothing is logged as an error', async () => {
    const scratch = await startScratchRedis();
    const captured = capturingLog();
    // The door reads memory once at start and not again, so only Redis itself refuses.
    const door = await startDoor(
      testConfig('memory-oom', { REDIS_URL: scratch.url, ATLAS_REDIS_MEMORY_REFRESH_MS: 600_000 }),
      { log: captured.log },
    );
    const admin = connect(scratch.url);
    try {
      expect((await postJson(`${door.url}/events`, spaceCreated(1))).status).toBe(202);
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      await admin.config('SET', 'maxmemory', '1');
      const refused = await postJson(`${door.url}/events`, spaceCreated(2));
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({
        error: 'redis_memory',
        message: expect.stringContaining('out of memory'),
      });
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(captured.lines.filter((l) => l.level >= 50)).toEqual([]);
    } finally {
      admin.disconnect();
      await door.close();
      await scratch.stop();
    }
  });
});
