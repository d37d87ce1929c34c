/**
 * `atlas dlq` as an operator runs it (the real CLI as a child process, the real validate stage,
 * real Redis): arguments checked before Redis, "N of M shown", --all guarded by --yes and
 * --dry-run, redrive history that makes a loop visible, stats by stage and reason.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listDeadLetters } from '../../pipeline/dlq.ts';
import type { Fields } from '../../pipeline/entry.ts';
import { createValidate } from '../../stages/validate/index.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { runAtlas } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { addEntries } from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('cli-dlq');
const env = { ATLAS_PREFIX: fx.prefix };
// each test on a prefix of its own: one that fails leaves nothing in the next one's DLQ
let p = fx.freshPrefix();
let at = { ATLAS_PREFIX: p.prefix };
beforeEach(() => {
  p = fx.freshPrefix();
  at = { ATLAS_PREFIX: p.prefix };
});
afterEach(stopStages);
afterAll(stopStages);

let seq = 0;
/** An ingest entry the validate stage dead-letters: its payload is not JSON. */
function broken(eventId: string): Fields {
  seq += 1;
  return {
    seq: String(seq),
    event_id: eventId,
    event_type: 'space.created',
    version: '1',
    received_at: String(Date.now()),
    payload: '{not json',
  };
}

async function deadLettersFor(eventIds: string[]): Promise<void> {
  await addEntries(fx.redis, p.keys.stream('ingest'), eventIds.map(broken));
  // the global seq counter past what was added, as the door leaves it
  await fx.redis.set(p.keys.seq, String(seq));
}

const ANSI = '\u001b[';

describe('atlas dlq: arguments are checked before Redis is touched', () => {
  // An unreachable Redis: any of these reaching it would fail with exit 1, not the usage code.
  const nowhere = { ...env, REDIS_URL: 'redis://127.0.0.1:1' };

  it.each([
    [
      ['dlq', 'list', '--stage', 'nosuchstage'],
      /unknown stage nosuchstage; valid: validate, validate-critical, transitive/,
    ],
    [
      ['dlq', 'list', '--reason', 'nope'],
      /unknown reason nope; valid: invalid_payload, .*space_conflict, .*handler_error/,
    ],
    [['dlq', 'list', '-n', 'abc'], /-n\/--count must be a positive whole number, got abc/],
    [['dlq', 'show', 'not-an-id'], /not a dead-letter id: not-an-id/],
    [['dlq', 'redrive', '12-x'], /not a dead-letter id: 12-x/],
    [['dlq', 'purge', '1-1', '--all'], /give ids or --all, not both/],
    [['dlq', 'purge'], /name the entries to act on, or --all/],
    [['dlq', 'purge', '--all', '--stage', 'relay'], /unknown stage relay/],
  ])('%j → exit 2', async (args, message) => {
    const r = await runAtlas(args, nowhere);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('an unknown command or option is a usage error too (exit 2)', async () => {
    const r = await runAtlas(['dlq', 'list', '--nope'], nowhere);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--nope'");
  });
});

describe('atlas dlq on real dead letters', () => {
  it('lists "N of M shown" with the event_id, refuses --all without --yes, dry-runs, and counts by stage and reason', async () => {
    await startStage(createValidate, testConfig(p.prefix));
    await deadLettersFor(['ev-a', 'ev-b', 'ev-c']);
    await eventually(async () => expect(await listDeadLetters(fx.redis, p.keys)).toHaveLength(3));
    await stopStages();

    // one after the other: side by side they overload a small machine's CPU
    const list = await runAtlas(['dlq', 'list'], at);
    const cut = await runAtlas(['dlq', 'list', '-n', '2'], at);
    const json = await runAtlas(['dlq', 'list', '--json', '-n', '1', '--reason', 'invalid_payload'], at);
    const stats = await runAtlas(['dlq', 'stats'], at);
    const statsJson = await runAtlas(['dlq', 'stats', '--json'], at);
    const unknown = await runAtlas(['dlq', 'show', '1-1'], at);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).not.toContain(ANSI); // a pipe gets no colour codes
    const [head, ...rows] = list.stdout.trim().split('\n');
    expect(head).toMatch(/^id\s+stage\s+reason\s+event_id\s+attempts\s+redrives\s+failed_at\s+error$/);
    expect(rows.slice(0, 3).map((r) => r.split(/\s+/)[3])).toEqual(['ev-a', 'ev-b', 'ev-c']);
    expect(rows[0]).toMatch(/validate\s+invalid_payload\s+ev-a\s+1\s+0\s/);
    expect(rows.at(-1)).toBe('3 of 3 shown');
    expect(cut.stdout.trim().split('\n').at(-1)).toBe('2 of 3 shown');

    const parsed = JSON.parse(json.stdout);
    expect(parsed).toMatchObject({ total: 3, shown: 1 });
    expect(parsed.entries[0]).toMatchObject({
      stage: 'validate',
      reason: 'invalid_payload',
      eventId: 'ev-a',
    });

    expect(stats.stdout).toMatch(/^stage\s+reason\s+count\nvalidate\s+invalid_payload\s+3\ntotal: 3\n$/);
    expect(JSON.parse(statsJson.stdout)).toEqual({
      total: 3,
      counts: [{ stage: 'validate', reason: 'invalid_payload', count: 3 }],
    });
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toBe('atlas: no dead-lettered entry 1-1\n');

    const refused = await runAtlas(['dlq', 'purge', '--all', '--stage', 'validate'], at);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toBe(
      'atlas: --all would purge 3 dead letters (stage=validate); add --yes to do it (or --dry-run to list them)\n',
    );
    const dry = await runAtlas(['dlq', 'redrive', '--all', '--dry-run'], at);
    expect(dry.code).toBe(0);
    expect(dry.stdout.trim().split('\n').at(-1)).toBe('dry run: would redrive 3 dead letters');
    expect(await fx.redis.xlen(p.keys.dlq)).toBe(3); // neither touched anything

    const none = await runAtlas(['dlq', 'list', '--reason', 'space_conflict'], at);
    expect(none.stdout).toBe('no dead letters (reason=space_conflict)\n');
    const purged = await runAtlas(['dlq', 'purge', '--all', '--yes'], at);
    expect(purged.stdout).toBe('purged: 3\n');
    expect(await fx.redis.xlen(p.keys.dlq)).toBe(0);
    expect(await fx.redis.hlen(p.keys.dlqCounts)).toBe(0);
  }, 180_000);

  it('a redriven entry that fails again carries its history: redrive count, earlier DLQ ids, first failure', async () => {
    await startStage(createValidate, testConfig(p.prefix));
    await deadLettersFor(['ev-loop']);
    const first = await eventually(async () => {
      const [d] = await listDeadLetters(fx.redis, p.keys);
      if (!d) throw new Error('not dead-lettered yet');
      return d;
    });
    expect(first.history).toBeNull();

    const once = await runAtlas(['dlq', 'redrive', first.id], at);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout).toMatch(
      new RegExp(`^${first.id} → \\{${p.prefix}\\}:ingest \\d+-\\d+\\nredriven: 1\\n$`),
    );
    const second = await eventually(async () => {
      const [d] = await listDeadLetters(fx.redis, p.keys);
      if (!d || d.id === first.id) throw new Error('not dead-lettered again yet');
      return d;
    });
    expect(second.history).toEqual({
      count: 1,
      previous: [first.id],
      firstReason: 'invalid_payload',
      firstError: first.error,
      firstFailedAt: first.failedAt,
    });
    // it re-entered the order with a new seq; everything else is the entry as it first came
    expect(second.original).toEqual({ ...first.original, seq: second.original.seq });
    expect(Number(second.original.seq)).toBeGreaterThan(Number(first.original.seq));

    // the bulk path keeps it too, and the listing shows the loop
    const all = await runAtlas(['dlq', 'redrive', '--all', '--yes'], at);
    expect(all.stdout).toBe('redriven: 1\n');
    const third = await eventually(async () => {
      const [d] = await listDeadLetters(fx.redis, p.keys);
      if (!d || d.id === second.id) throw new Error('not dead-lettered again yet');
      return d;
    });
    expect(third.history).toMatchObject({
      count: 2,
      previous: [first.id, second.id],
      firstFailedAt: first.failedAt,
    });
    const shown = await runAtlas(['dlq', 'show', third.id], at);
    expect(JSON.parse(shown.stdout).history.previous).toEqual([first.id, second.id]);
    const listed = await runAtlas(['dlq', 'list'], at);
    expect(listed.stdout).toMatch(/invalid_payload\s+ev-loop\s+1\s+2\s/);
  }, 180_000);

  it('redriving or purging an id that is not there exits 3 naming it', async () => {
    const r = await runAtlas(['dlq', 'purge', '1-1', '2-2'], at);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('purged: 0\n');
    expect(r.stderr).toBe('atlas: not in the dead-letter stream: 1-1, 2-2\n');
  });
});
