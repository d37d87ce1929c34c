/**
 * `atlas streams` and `atlas cleanup` against real Redis (the CLI as a child process): pipeline
 * order, stage state and lease holder, the prefix hint, the global --prefix and --redis-url, and
 * a cleanup that needs --yes.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { pipelineKeys } from '../../pipeline/cleanup.ts';
import { pauseKey } from '../../pipeline/pause.ts';
import { createValidate } from '../../stages/validate/index.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { runAtlas } from '../support/processes.ts';
import { REDIS_URL, uniquePrefix, useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import { addEntries } from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('cli-streams');
// the environment points elsewhere: the global options must win
const elsewhere = { ATLAS_PREFIX: 'not-this-one', REDIS_URL: 'redis://127.0.0.1:1' };
const at = ['--prefix', fx.prefix, '--redis-url', REDIS_URL];
afterAll(stopStages);

describe('atlas streams', () => {
  it('shows streams in pipeline order, each stage with its state and lease holder', async () => {
    await startStage(createValidate, testConfig(fx.prefix));
    const singleton = await startStage(
      relayStage({ name: 'transitive', input: 'validated', output: 'transitive', singleton: true }),
      testConfig(fx.prefix),
    );
    await addEntries(fx.redis, fx.keys.stream('ingest'), [
      { seq: '1', event_id: 'e1', event_type: 'nope', version: '1', received_at: '1', payload: '{}' },
    ]);
    await fx.redis.set(pauseKey(fx.keys, 'serialize'), '1');
    const holder = singleton.worker.consumer;

    const [text, json] = await eventually(async () => {
      const both = await Promise.all([
        runAtlas(['streams', ...at], elsewhere),
        runAtlas([...at, 'streams', '--json'], elsewhere),
      ]);
      expect(
        JSON.parse(both[1].stdout).stages.find((s: { stage: string }) => s.stage === 'transitive')
          .leaseHolder,
      ).toBe(holder);
      return both;
    }, 30_000);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).not.toContain('\u001b[');
    const lines = text.stdout.split('\n');
    expect(lines[0]).toBe(`pipeline ${fx.prefix}`);
    expect(lines.find((l) => l.startsWith('stream'))).toMatch(
      /^stream\s+length\s+group\s+consumers\s+lag\s+pending\s+oldest pending$/,
    );
    const ingestAt = lines.findIndex((l) => l.startsWith(`{${fx.prefix}}:ingest `));
    const validatedAt = lines.findIndex((l) => l.startsWith(`{${fx.prefix}}:validated `));
    expect(ingestAt).toBeGreaterThan(0);
    expect(validatedAt).toBeGreaterThan(ingestAt);
    const stageRows = lines.slice(lines.findIndex((l) => l.startsWith('stage'))).filter(Boolean);
    expect(stageRows[0]).toMatch(/^stage\s+state\s+lease holder\s+instances\s+problems$/);
    expect(stageRows.slice(1).map((r) => r.split(/\s+/).slice(0, 2))).toEqual([
      ['validate', 'active'],
      ['validate-critical', 'none'],
      ['transitive', 'active'],
      ['canonical', 'none'],
      ['serialize', 'paused'],
      ['emit', 'none'],
      ['publish-critical', 'none'],
      ['publish-high', 'none'],
      ['publish-normal', 'none'],
      ['publish-low', 'none'],
    ]);
    expect(stageRows.find((r) => r.startsWith('transitive'))).toContain(holder);

    const parsed = JSON.parse(json.stdout);
    expect(parsed.prefix).toBe(fx.prefix);
    expect(parsed.streams.map((s: { stream: string }) => s.stream).slice(0, 2)).toEqual([
      fx.keys.stream('ingest'),
      fx.keys.stream('validated'),
    ]);
    expect(parsed.stages.find((s: { stage: string }) => s.stage === 'validate')).toMatchObject({
      state: 'active',
      leaseHolder: null,
      instances: 1,
    });
    await stopStages();
  });

  it('pointed at an empty prefix, names the prefixes that exist', async () => {
    const empty = uniquePrefix('nothing');
    const r = await runAtlas(['streams', '--prefix', empty], { REDIS_URL });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^no streams under prefix ${empty}; found prefixes: .*\\b${fx.prefix}\\b`),
    );
    expect(r.stdout).toMatch(/\(use --prefix .*\)\n$/);
  });

  it('an unreachable Redis is one line and exit 1; --debug adds the stack', async () => {
    const r = await runAtlas(['streams'], elsewhere);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^atlas: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*\n$/);
    const debug = await runAtlas(['streams', '--debug'], elsewhere);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/\n\s+at /);
  });
});

describe('atlas cleanup', () => {
  it('refuses without --yes (exit 4, saying what), lists with --dry-run, removes every key with --yes', async () => {
    const { prefix, keys } = fx.freshPrefix('cli-cleanup');
    await addEntries(fx.redis, keys.stream('ingest'), [{ seq: '1' }]);
    await fx.redis.set(keys.of('checkpoint', 'x'), '1');
    await fx.redis.hset(keys.dlqCounts, 'validate|invalid_payload', '1');
    const env = { ATLAS_PREFIX: prefix };

    const refused = await runAtlas(['cleanup'], env);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toBe(
      `atlas: would remove 3 keys of prefix ${prefix}; add --yes to do it (or --dry-run to list)\n`,
    );
    const dry = await runAtlas(['cleanup', '--dry-run'], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe(
      [...(await pipelineKeys(fx.redis, keys)), `dry run: would remove 3 keys of prefix ${prefix}`, ''].join(
        '\n',
      ),
    );
    expect(await pipelineKeys(fx.redis, keys)).toHaveLength(3);

    const done = await runAtlas(['cleanup', '--yes'], env);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toBe(`removed 3 keys of prefix ${prefix}\n`);
    expect(await pipelineKeys(fx.redis, keys)).toEqual([]);
    expect(await fx.redis.exists(fx.keys.stream('ingest'))).toBe(1); // another prefix is untouched
  });
});
