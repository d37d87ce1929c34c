/**
 * Secrets never reach logs, error messages or `atlas config`; Redis connection errors are JSON
 * warnings, never ioredis's "Unhandled error event" stack traces on stderr.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfig, secretsOf, settingsTable, shownValue } from '../../pipeline/config.ts';
import { redactText, redactUrl } from '../../pipeline/secrets.ts';
import { delay } from '../support/eventually.ts';
import { type Child, killChildren, ROOT, runAtlas, spawnAtlas, spawnStage } from '../support/processes.ts';
import { freePort, type ScratchRedis, startScratchRedis, uniquePrefix } from '../support/redis.ts';

const run = promisify(execFile);
const PASSWORD = 'Sup3r-s3cret-pw';
const SASL_PASSWORD = 'kafka-Sasl-pw-42';

/** Every byte a process wrote, checked for both secrets. */
function expectNoSecret(output: string): void {
  expect(output).not.toContain(PASSWORD);
  expect(output).not.toContain(SASL_PASSWORD);
}

function expectOnlyJsonLines(child: Child): void {
  for (const line of child.stdout.split('\n').filter((l) => l.length > 0))
    expect(() => JSON.parse(line)).not.toThrow();
}

afterEach(() => killChildren());

describe('redaction', () => {
  it('masks URL passwords, keeps the user and the address', () => {
    expect(redactUrl(`redis://door:${PASSWORD}@10.0.0.1:6379/0`)).toBe('redis://door:***@10.0.0.1:6379/0');
    expect(redactUrl(`rediss://:${PASSWORD}@h:6380`)).toBe('rediss://***@h:6380');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(
      redactText(`connect to redis://u:${PASSWORD}@h failed; auth ${SASL_PASSWORD}`, [SASL_PASSWORD]),
    ).toBe('connect to redis://u:***@h failed; auth ***');
  });

  it('marks secret settings: the table, --values and config errors never show them', () => {
    const config = parseConfig({
      REDIS_URL: `redis://door:${PASSWORD}@127.0.0.1:6379`,
      KAFKA_SASL_MECHANISM: 'scram-sha-256',
      KAFKA_SASL_USERNAME: 'atlas',
      KAFKA_SASL_PASSWORD: SASL_PASSWORD,
    });
    expect(secretsOf(config).sort()).toEqual([PASSWORD, SASL_PASSWORD].sort());
    expect(shownValue('KAFKA_SASL_PASSWORD', SASL_PASSWORD)).toBe('***');
    expect(shownValue('REDIS_URL', config.REDIS_URL)).toBe('redis://door:***@127.0.0.1:6379');
    expect(settingsTable()).toMatch(/`KAFKA_SASL_PASSWORD` \| `""` \| .*secret/);
    expect(() => parseConfig({ REDIS_URL: `redis://door:${PASSWORD}@bad host` })).toThrow(
      /REDIS_URL=redis:\/\/door:\*\*\*@/,
    );
  });
});

describe('logs', () => {
  it('mask secret fields wherever they appear in a logged object', async () => {
    const script = `import('./pipeline/log.ts').then(({ createLogger }) => createLogger('info').info({
      config: { REDIS_URL: 'redis://u:${PASSWORD}@h', KAFKA_SASL_PASSWORD: '${SASL_PASSWORD}' },
      sasl: { mechanism: 'scram-sha-256', password: '${SASL_PASSWORD}' },
    }, 'settings'))`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
    const line = JSON.parse(stdout) as Record<string, Record<string, unknown>>;
    expect(line.config).toEqual({ REDIS_URL: '***', KAFKA_SASL_PASSWORD: '***' });
    expect(line.sasl).toBe('***');
    expectNoSecret(stdout);
  });
});

describe('processes with secrets in their settings', () => {
  const env = {
    ATLAS_PREFIX: uniquePrefix('sec'),
    KAFKA_SASL_MECHANISM: 'scram-sha-256',
    KAFKA_SASL_USERNAME: 'atlas',
    KAFKA_SASL_PASSWORD: SASL_PASSWORD,
  };

  it('atlas config --values masks them', async () => {
    const r = await runAtlas(['config', '--values'], {
      ...env,
      REDIS_URL: `redis://door:${PASSWORD}@127.0.0.1:1`,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('REDIS_URL=redis://door:***@127.0.0.1:1');
    expect(r.stdout).toContain('KAFKA_SASL_PASSWORD=***');
    expectNoSecret(r.stdout + r.stderr);
  });

  it('the CLI names an unreachable Redis without its password', async () => {
    const r = await runAtlas(['streams'], {
      ...env,
      REDIS_URL: `redis://door:${PASSWORD}@127.0.0.1:${await freePort()}`,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach Redis at redis:\/\/door:\*\*\*@127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expectNoSecret(r.stdout + r.stderr);
  });

  it('the door warns about an unreachable Redis without its password, in JSON', async () => {
    const port = await freePort();
    const door = spawnAtlas(['run', 'ingest'], {
      ...env,
      ATLAS_HTTP_PORT: String(await freePort()),
      REDIS_URL: `redis://door:${PASSWORD}@127.0.0.1:${port}`,
    });
    const warning = await door.waitForLog('Redis not reachable yet; answering 503 until it is', 15_000);
    expect(warning.url).toBe(`redis://door:***@127.0.0.1:${port}`);
    await door.waitForLog('redis: connection error');
    await door.term();
    expectNoSecret(door.stdout + door.stderr);
    expect(door.stderr).not.toContain('Unhandled error event');
    expectOnlyJsonLines(door);
  });
});

describe('a Redis restart under a running stage', () => {
  let scratch: ScratchRedis | undefined;
  afterAll(() => scratch?.stop());

  it('is logged as rate-limited JSON warnings; nothing on stderr', async () => {
    scratch = await startScratchRedis();
    // a singleton: its lease and its watchdog have connections of their own, which must log the same way
    const stage = spawnStage('singleton', {
      ATLAS_PREFIX: uniquePrefix('sec-restart'),
      REDIS_URL: scratch.url,
    });
    await stage.waitForLog('worker started');
    await scratch.stop();
    await delay(2500); // a few reconnect attempts fail meanwhile
    await scratch.restart({ keepData: false });
    const back = await stage.waitForLog('redis: connected again');
    // one warning for the whole outage; the failed reconnects after it are only counted
    expect(
      stage
        .logsMatching('redis: connection error')
        .map((l) => l.connection)
        .sort(),
    ).toEqual([
      'atlas-control',
      'atlas-lease',
      'atlas-metrics',
      'atlas-read-singleton',
      'atlas-stage',
      'atlas-watch-singleton',
    ]);
    expect(back.suppressed).toBeGreaterThan(0);
    expect((await stage.term()).code).toBe(0);
    expect(stage.stderr).toBe('');
    expectOnlyJsonLines(stage);
  });
});
