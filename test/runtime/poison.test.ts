import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { listDeadLetters, purge, redrive, showDeadLetter } from '../../pipeline/dlq.ts';
import type { Fields } from '../../pipeline/entry.ts';
import { type StageFactory, TransientError } from '../../pipeline/stage.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { type Child, killChildren, runAtlas, spawnStage } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import {
  addEntries,
  drained,
  fieldValues,
  numericSort,
  pendingCount,
  range,
  readAll,
} from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('poison');
afterEach(async () => {
  await stopStages();
  await killChildren();
});

describe('a handler that throws on one entry', () => {
  const { prefix, keys } = fx.freshPrefix('poison-throw');
  const input = keys.stream('in');
  const output = keys.stream('out');
  let broken = true;
  const factory = relayStage({ throwsOn: (f) => broken && f.n === '7' });

  it('dead-letters that entry after ATLAS_MAX_DELIVERIES attempts; the others pass and the stream moves on', async () => {
    const config = testConfig(prefix, { ATLAS_MAX_DELIVERIES: 3, ATLAS_BATCH_SIZE: 5 });
    await fx.redis.set(keys.seq, '20');
    const ids = await addEntries(
      fx.redis,
      input,
      range(20).map((n) => ({ n, seq: n, kind: 'test' })),
    );
    await startStage(factory, config);
    await eventually(() => drained(fx.redis, input, 'relay'));
    expect(await fieldValues(fx.redis, output, 'n')).toEqual(range(20).filter((n) => n !== '7'));

    const [dead, ...more] = await listDeadLetters(fx.redis, keys);
    expect(more).toEqual([]);
    expect(dead).toMatchObject({
      stage: 'relay',
      reason: 'handler_error',
      attempts: 3,
      stream: input,
      entryId: ids[6],
      original: { n: '7', seq: '7', kind: 'test' },
    });
    expect(dead!.error).toBe('refusing entry 7');
    expect(Date.parse(dead!.failedAt)).toBeGreaterThan(Date.now() - 60_000);

    // The stream moves on.
    await addEntries(fx.redis, input, [{ n: '21', seq: '21' }]);
    await eventually(async () => expect((await fieldValues(fx.redis, output, 'n')).at(-1)).toBe('21'));
    expect(await pendingCount(fx.redis, input, 'relay')).toBe(0);
  });

  it('redrive puts it back on the input with a new seq; once fixed it passes', async () => {
    const [dead] = await listDeadLetters(fx.redis, keys);
    broken = false;
    const done = await redrive(fx.redis, keys, [dead!.id]);
    expect(done).toEqual([[dead!.id, input, expect.stringMatching(/^\d+-\d+$/)]]);
    expect(await showDeadLetter(fx.redis, keys, dead!.id)).toBeUndefined();
    expect(await listDeadLetters(fx.redis, keys)).toEqual([]);
    const back = (await readAll(fx.redis, input)).find((e) => e.id === done[0]![2]);
    // its history rides along (dlq-redrive.lua), for a dead letter it may become again
    expect(back?.toJSON()).toEqual({
      n: '7',
      seq: '21',
      kind: 'test',
      'redrive.count': '1',
      'redrive.previous': dead!.id,
      'redrive.first_reason': 'handler_error',
      'redrive.first_error': 'refusing entry 7',
      'redrive.first_failed_at': dead!.failedAt,
    });
    expect(await fx.redis.get(keys.seq)).toBe('21');

    await startStage(factory, testConfig(prefix, { ATLAS_MAX_DELIVERIES: 3 }));
    await eventually(async () =>
      // the test stage forwards every field, the history with them
      expect((await readAll(fx.redis, output)).at(-1)?.toJSON()).toMatchObject({
        n: '7',
        seq: '21',
        kind: 'test',
      }),
    );
    expect(await listDeadLetters(fx.redis, keys)).toEqual([]);
  });
});

describe('transient faults', () => {
  it('are retried with backoff for as long as they last, never dead-lettered', async () => {
    const { prefix, keys } = fx.freshPrefix('poison-transient');
    let failures = 0;
    const flaky: StageFactory = () => ({
      name: 'flaky',
      input: 'in',
      output: 'out',
      handle(entries, step) {
        if (entries.some((e) => e.text('n') === '3') && failures < 4) {
          failures++;
          throw new TransientError('sink unreachable');
        }
        for (const e of entries) {
          step.send({ n: e.text('n') });
          step.ack(e);
        }
      },
    });
    await addEntries(
      fx.redis,
      keys.stream('in'),
      range(5).map((n) => ({ n })),
    );
    await startStage(flaky, testConfig(prefix, { ATLAS_MAX_DELIVERIES: 2, ATLAS_BATCH_SIZE: 2 }));
    await eventually(() => drained(fx.redis, keys.stream('in'), 'flaky'), 15_000);
    expect(failures).toBe(4);
    expect(await fieldValues(fx.redis, keys.stream('out'), 'n')).toEqual(range(5));
    expect(await fx.redis.xlen(keys.dlq)).toBe(0);
  });
});

describe('a transient fault while a failed batch is retried entry by entry', () => {
  it('does not write the entries already committed a second time', async () => {
    const { prefix, keys } = fx.freshPrefix('poison-mixed');
    let transientLeft = 1;
    const mixed: StageFactory = () => ({
      name: 'mixed',
      input: 'in',
      output: 'out',
      handle(entries, step) {
        for (const e of entries) {
          const n = e.text('n');
          if (n === '2') throw new Error('bad entry'); // the batch fails: one entry at a time
          if (n === '4' && entries.length === 1 && transientLeft > 0) {
            transientLeft--;
            throw new TransientError('sink unreachable');
          }
          step.send({ n });
          step.ack(e);
        }
      },
    });
    await addEntries(
      fx.redis,
      keys.stream('in'),
      range(5).map((n) => ({ n })),
    );
    await startStage(mixed, testConfig(prefix, { ATLAS_MAX_DELIVERIES: 2, ATLAS_BATCH_SIZE: 5 }));
    await eventually(() => drained(fx.redis, keys.stream('in'), 'mixed'), 15_000);
    expect(transientLeft).toBe(0);
    expect(await fieldValues(fx.redis, keys.stream('out'), 'n')).toEqual(['1', '3', '4', '5']);
    const dead = await listDeadLetters(fx.redis, keys);
    expect(dead.map((d) => [d.original.n, d.reason])).toEqual([['2', 'handler_error']]);
  });
});

describe('a process that crashes on an entry every time', () => {
  const { prefix, keys } = fx.freshPrefix('poison-crash');
  const input = keys.stream('in');
  const output = keys.stream('out');
  const env = {
    ATLAS_PREFIX: prefix,
    ATLAS_MAX_DELIVERIES: '3',
    ATLAS_CLAIM_IDLE_MS: '300',
    ATLAS_BLOCK_MS: '100',
    ATLAS_BATCH_SIZE: '4',
  };

  it('is dead-lettered as max_deliveries after restarts; its neighbours get through', async () => {
    await addEntries(
      fx.redis,
      input,
      range(12).map((n): Fields => (n === '6' ? { n, crash: '1' } : { n })),
    );
    let child: Child = spawnStage('crash', env);
    let starts = 1;
    // The supervisor: restart the stage whenever it dies, until the entry is dead-lettered.
    await eventually(
      async () => {
        if (child.exit) {
          expect(child.exit.signal).toBe('SIGKILL');
          child = spawnStage('crash', env);
          starts++;
        }
        expect(await listDeadLetters(fx.redis, keys)).toHaveLength(1);
      },
      40_000,
      100,
    );
    const [dead] = await listDeadLetters(fx.redis, keys);
    expect(dead).toMatchObject({
      stage: 'crash',
      reason: 'max_deliveries',
      original: { n: '6', crash: '1' },
    });
    expect(dead!.attempts).toBeGreaterThan(3);
    expect(starts).toBeGreaterThanOrEqual(3);
    await eventually(() => drained(fx.redis, input, 'crash'), 15_000);
    expect(numericSort(await fieldValues(fx.redis, output, 'n'))).toEqual(range(12).filter((n) => n !== '6'));
    const stop = await child.term();
    expect(stop.code).toBe(0);
  });
});

describe('atlas dlq', () => {
  const { prefix, keys } = fx.freshPrefix('poison-cli');
  const input = keys.stream('in');
  const env = { ATLAS_PREFIX: prefix };
  let ids: string[] = [];

  afterAll(async () => {
    await fx.redis.del(input);
  });

  it('lists, shows, redrives and purges dead-lettered entries', async () => {
    expect((await runAtlas(['dlq', 'list'], env)).stdout).toContain('the dead-letter stream is empty');

    await fx.redis.set(keys.seq, '100');
    // named as a pipeline stage: `--stage` accepts only those
    await startStage(
      relayStage({ name: 'validate', throwsOn: (f) => f.bad === '1' }),
      testConfig(prefix, { ATLAS_MAX_DELIVERIES: 1 }),
    );
    await addEntries(fx.redis, input, [
      { seq: '1', bad: '1', note: 'first' },
      { seq: '2', bad: '0' },
      { seq: '3', bad: '1', note: 'second' },
    ]);
    await eventually(async () => expect(await listDeadLetters(fx.redis, keys)).toHaveLength(2));
    await stopStages();
    ids = (await listDeadLetters(fx.redis, keys)).map((d) => d.id);

    // Read-only commands, one after the other: side by side they overload a small machine's CPU.
    const list = await runAtlas(['dlq', 'list'], env);
    const json = await runAtlas(['dlq', 'list', '--json', '--reason', 'handler_error', '-n', '1'], env);
    const other = await runAtlas(['dlq', 'list', '--json', '--stage', 'emit'], env);
    const show = await runAtlas(['dlq', 'show', ids[1]!], env);
    const unknown = await runAtlas(['dlq', 'show', '1-1'], env);
    const neither = await runAtlas(['dlq', 'redrive'], env);
    const both = await runAtlas(['dlq', 'purge', ids[0]!, '--all'], env);
    expect(list.code).toBe(0);
    const lines = list.stdout.trim().split('\n');
    expect(lines).toHaveLength(4); // header, two entries, "2 of 2 shown"
    expect(lines[1]).toMatch(
      new RegExp(`^${ids[0]}\\s+validate\\s+handler_error\\s+-\\s+1\\s+0\\s.*refusing entry`),
    );
    expect(lines[3]).toBe('2 of 2 shown');

    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout);
    expect(parsed).toMatchObject({ total: 2, shown: 1 });
    expect(parsed.entries[0]).toMatchObject({
      id: ids[0],
      stage: 'validate',
      original: { seq: '1', note: 'first' },
    });
    expect(JSON.parse(other.stdout)).toEqual({ total: 0, shown: 0, entries: [] });

    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({
      id: ids[1],
      reason: 'handler_error',
      original: { seq: '3' },
    });

    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toBe('atlas: no dead-lettered entry 1-1\n');
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('name the entries to act on, or --all');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give ids or --all, not both');

    const re = await runAtlas(['dlq', 'redrive', ids[0]!], env);
    expect(re.code).toBe(0);
    expect(re.stdout).toMatch(new RegExp(`^${ids[0]} → \\{${prefix}\\}:in \\d+-\\d+\\nredriven: 1\\n$`));
    const redriven = (await readAll(fx.redis, input)).at(-1)!;
    expect(redriven.toJSON()).toMatchObject({ seq: '101', bad: '1', note: 'first', 'redrive.count': '1' });
    expect((await listDeadLetters(fx.redis, keys)).map((d) => d.id)).toEqual([ids[1]]);

    const gone = await runAtlas(['dlq', 'purge', ids[1]!], env);
    expect(gone.code).toBe(0);
    expect(gone.stdout).toBe('purged: 1\n');
    expect(await listDeadLetters(fx.redis, keys)).toEqual([]);
    expect(await fx.redis.xlen(keys.dlq)).toBe(0);
    // a dozen CLI processes one after the other: tens of seconds on a loaded machine
  }, 180_000);

  it('works on everything matching with --all', async () => {
    await startStage(
      relayStage({ name: 'validate', throwsOn: (f) => f.bad === '1' }),
      testConfig(prefix, { ATLAS_MAX_DELIVERIES: 1 }),
    );
    await eventually(async () => expect(await listDeadLetters(fx.redis, keys)).toHaveLength(1));
    await addEntries(fx.redis, input, [{ seq: '4', bad: '1' }]);
    await eventually(async () => expect(await listDeadLetters(fx.redis, keys)).toHaveLength(2));
    await stopStages();
    expect(
      (await runAtlas(['dlq', 'purge', '--all', '--yes', '--reason', 'max_deliveries'], env)).stdout,
    ).toBe('purged: 0\n');
    const all = await runAtlas(['dlq', 'purge', '--all', '--yes', '--stage', 'validate'], env);
    expect(all.stdout).toBe('purged: 2\n');
    expect(await purge(fx.redis, keys, ['1-1'])).toEqual([]);
  });

  it('says so when Redis is unreachable', async () => {
    const r = await runAtlas(['dlq', 'list'], { ...env, REDIS_URL: 'redis://127.0.0.1:1' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot reach Redis at redis://127.0.0.1:1');
  });
});
