import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readmeWithSettings } from '../../ops/readme-settings.ts';
import { ConfigError, parseConfig, settings, settingsTable } from '../../pipeline/config.ts';
import { runAtlas } from '../support/processes.ts';
import { uniquePrefix } from '../support/redis.ts';

function configError(env: Record<string, string>): string {
  try {
    parseConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('settings', () => {
  it('has a documented default for every setting', () => {
    const c = parseConfig({});
    expect(c).toMatchObject({
      REDIS_URL: 'redis://127.0.0.1:6379',
      ATLAS_PREFIX: 'atlas',
      ATLAS_HTTP_PORT: 8080,
      ATLAS_METRICS_PORT: 9464,
      ATLAS_METRICS_HOST: '127.0.0.1',
      ATLAS_STALL_MS: 30000,
      LOG_LEVEL: 'info',
      ATLAS_BATCH_SIZE: 200,
      ATLAS_BLOCK_MS: 1000,
      ATLAS_MAX_DELIVERIES: 5,
      ATLAS_CLAIM_IDLE_MS: 30000,
      ATLAS_CLAIM_CHECK_BYTES: 65536,
      ATLAS_HIGH_WATER: 100000,
      ATLAS_RETAIN_ENTRIES: 100000,
      ATLAS_SHUTDOWN_MS: 10000,
      ATLAS_DEDUP_WINDOW_S: 604800,
      ATLAS_MAX_BODY_BYTES: 4 * 1024 * 1024,
      ATLAS_MAX_BATCH_EVENTS: 1000,
      ATLAS_RESEQUENCE_BUFFER: 10000,
      ATLAS_LEASE_MS: 5000,
      ATLAS_ROOT_SPACE_ID: [],
      ATLAS_CONFLATE_MS: 0,
      KAFKA_BROKER: '',
      KAFKA_TOPIC_CANONICAL: 'topology.canonical',
    });
    expect(Object.keys(c).sort()).toEqual(Object.keys(settings).sort());
  });

  it('refuses root ids that are not 16-byte hex, and a block time the stop bound cannot wait out', () => {
    expect(() => parseConfig({ ATLAS_ROOT_SPACE_ID: 'aa,25000000000000000000000000000001' })).toThrow(
      /ATLAS_ROOT_SPACE_ID.*not 16-byte space ids: aa/s,
    );
    expect(() => parseConfig({ ATLAS_BLOCK_MS: '5000', ATLAS_SHUTDOWN_MS: '2000' })).toThrow(
      /ATLAS_BLOCK_MS/,
    );
  });

  it('reads numbers and lists from strings; an empty value counts as unset', () => {
    const c = parseConfig({
      ATLAS_BATCH_SIZE: '7',
      ATLAS_BLOCK_MS: '',
      ATLAS_ROOT_SPACE_ID:
        ' 0xAA000000000000000000000000000001, bb000000-0000-0000-0000-000000000002 ,,cc000000000000000000000000000003 ',
      LOG_LEVEL: 'debug',
      ATLAS_PREFIX: 'my-pipe_1.x',
      NOT_A_SETTING: 'ignored',
    });
    expect(c.ATLAS_BATCH_SIZE).toBe(7);
    expect(c.ATLAS_BLOCK_MS).toBe(1000);
    expect(c.ATLAS_ROOT_SPACE_ID).toEqual([
      'aa000000000000000000000000000001',
      'bb000000000000000000000000000002',
      'cc000000000000000000000000000003',
    ]);
    expect(c.LOG_LEVEL).toBe('debug');
    expect(c.ATLAS_PREFIX).toBe('my-pipe_1.x');
  });

  it('names each bad setting with its value, and only those', () => {
    const message = configError({
      ATLAS_BATCH_SIZE: '0',
      ATLAS_BLOCK_MS: 'soon',
      ATLAS_CLAIM_IDLE_MS: '50',
      ATLAS_LEASE_MS: '1.5',
      LOG_LEVEL: 'loud',
      REDIS_URL: 'not a url',
      ATLAS_PREFIX: 'has space',
      ATLAS_MAX_DELIVERIES: '3',
    });
    const lines = message.split('\n');
    expect(lines[0]).toBe('invalid settings:');
    const named = lines.slice(1).map((l) => l.trim().split('=')[0]);
    expect(named.sort()).toEqual(
      [
        'ATLAS_BATCH_SIZE',
        'ATLAS_BLOCK_MS',
        'ATLAS_CLAIM_IDLE_MS',
        'ATLAS_LEASE_MS',
        'LOG_LEVEL',
        'REDIS_URL',
        'ATLAS_PREFIX',
      ].sort(),
    );
    expect(message).toContain('ATLAS_BATCH_SIZE=0:');
    expect(message).toContain('ATLAS_BLOCK_MS=soon:');
    expect(message).toContain('LOG_LEVEL=loud:');
    expect(message).not.toContain('ATLAS_MAX_DELIVERIES');
  });

  it("is documented, every setting of it, in the README's table", () => {
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    expect(readmeWithSettings(readme), 'run npm run docs:settings').toBe(readme);
  });

  it('prints a table row for every setting', () => {
    const table = settingsTable();
    for (const name of Object.keys(settings)) expect(table).toContain(`| \`${name}\` |`);
    expect(table).toContain('| `ATLAS_BATCH_SIZE` | `200` |');
  });
});

describe('the atlas command', () => {
  const env = { ATLAS_PREFIX: uniquePrefix('cfg') };

  it('exits 2 with one message naming every bad setting', async () => {
    const r = await runAtlas(['run', 'validate'], { ...env, ATLAS_BATCH_SIZE: '0', LOG_LEVEL: 'loud' });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.startsWith('atlas: invalid settings:\n')).toBe(true);
    expect(r.stderr.match(/atlas:/g)).toHaveLength(1);
    expect(r.stderr).toContain('ATLAS_BATCH_SIZE=0');
    expect(r.stderr).toContain('LOG_LEVEL=loud');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('checks settings for the inspection commands too', async () => {
    const r = await runAtlas(['dlq', 'list'], { ...env, ATLAS_MAX_DELIVERIES: 'many' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ATLAS_MAX_DELIVERIES=many');
  });

  it('prints the settings table and refuses unknown stages', async () => {
    const table = await runAtlas(['config', '--defaults'], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('| `ATLAS_HIGH_WATER` |');
    const unknown = await runAtlas(['run', 'nope'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown stage(s): nope');
  });
});
