/**
 * Replay of a stateless stage (validate) and an operator's pause, through the CLI against a real
 * Redis, with the stage running in this process: the preview changes nothing, out-of-range and
 * malformed targets are refused with their exit codes, an executed replay re-reads what it said
 * and does not dead-letter the bad events a second time; a paused stage reads nothing, says so
 * (/ready's reason, atlas_stage_paused) and reads again once resumed.
 */
import { afterAll, expect, it } from 'vitest';
import { groupsOf } from '../../pipeline/backlog.ts';
import { deletePipelineKeys } from '../../pipeline/cleanup.ts';
import { metrics } from '../../pipeline/metrics.ts';
import { streams } from '../../stages/streams.ts';
import { createValidate } from '../../stages/validate/index.ts';
import { testConfig } from '../support/config.ts';
import { acceptEvents, atlasOn } from '../support/control.ts';
import { envelope, spaceCreated } from '../support/events.ts';
import { eventually, stays } from '../support/eventually.ts';
import { keysMatching, useRedis } from '../support/redis.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('control-replay');
afterAll(stopStages);

const ingest = () => fx.keys.stream(streams.ingest);
const validated = () => fx.keys.stream(streams.validated);
const GOOD = 8;
const BAD = 2;

async function lastDelivered(): Promise<string> {
  return (await groupsOf(fx.redis, ingest())).find((g) => g.name === 'validate')!.lastDeliveredId;
}

it('replay: preview, refusals, execute without doubling the DLQ; pause and resume', async () => {
  const stage = await startStage(createValidate, testConfig(fx.prefix));
  const bad = [envelope('space.created', { nonsense: true }), envelope('space.created', { space_id: 'x' })];
  await acceptEvents(fx.redis, fx.keys, [
    ...Array.from({ length: GOOD }, (_, i) => spaceCreated(i + 1)),
    ...bad,
  ]);
  await eventually(async () => (await fx.redis.xlen(validated())) === GOOD + BAD, 30_000);
  expect(await fx.redis.xlen(fx.keys.dlq)).toBe(BAD);
  const before = await lastDelivered();

  // The preview says what would be re-read and moves nothing.
  const preview = await atlasOn(fx.prefix, ['replay', 'validate', '--to-earliest']);
  expect(preview.stderr).toBe('');
  expect(preview.code).toBe(0);
  expect(preview.stdout).toContain(`re-reads ${GOOD + BAD} entries`);
  expect(await lastDelivered()).toBe(before);
  const shifted = await atlasOn(fx.prefix, ['replay', 'validate', '--shift-by', '-3', '--json']);
  expect(JSON.parse(shifted.stdout).groups[0].count).toBe(3);
  const bySeq = await atlasOn(fx.prefix, ['replay', 'validate', '--from', '9']);
  expect(bySeq.stdout).toContain('re-reads 2 entries');

  // Outside the retained range, or not a target at all: refused, nothing moved.
  const past = await atlasOn(fx.prefix, ['replay', 'validate', '--from', '9999999999999-0', '--execute']);
  expect(past.code).toBe(4);
  expect(past.stderr).toMatch(/past the newest entry|after what group validate has read/);
  const trimmed = await atlasOn(fx.prefix, ['replay', 'validate', '--from', '1-0']);
  expect(trimmed.code).toBe(4);
  expect(trimmed.stderr).toContain('before the oldest entry');
  const forward = await atlasOn(fx.prefix, ['replay', 'validate', '--shift-by', '5']);
  expect(forward.code).toBe(4);
  const date = await atlasOn(fx.prefix, ['replay', 'validate', '--to-datetime', 'yesterday']);
  expect(date.code).toBe(2);
  const two = await atlasOn(fx.prefix, ['replay', 'validate', '--to-earliest', '--from', '1']);
  expect(two.code).toBe(2);
  const ordered = await atlasOn(fx.prefix, ['replay', 'transitive', '--to-earliest']);
  expect(ordered.code).toBe(4);
  expect(ordered.stderr).toContain('atlas rebuild transitive');
  const unknown = await atlasOn(fx.prefix, ['replay', 'nosuchstage', '--to-earliest']);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toContain('transitive, canonical');
  expect(await lastDelivered()).toBe(before);

  // Executed: a job run by the stage between batches; everything read again, the DLQ not doubled.
  const run = await atlasOn(fx.prefix, ['replay', 'validate', '--to-earliest', '--execute']);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  expect(run.stdout).toContain(`re-reads ${GOOD + BAD} entries`);
  expect(run.stdout).toContain(`${BAD} of them already dead-lettered`);
  await eventually(async () => (await fx.redis.xlen(validated())) === 2 * (GOOD + BAD), 30_000);
  await eventually(
    async () => (await fx.redis.exists(fx.keys.of('replayed-dead', 'validate'))) === 0,
    30_000,
  );
  expect(await fx.redis.xlen(fx.keys.dlq)).toBe(BAD);
  expect(await fx.redis.hgetall(fx.keys.dlqCounts)).toEqual({ 'validate|invalid_payload': String(BAD) });

  // Pause: a job too; the stage stays up, reads nothing, and says why.
  const paused = await atlasOn(fx.prefix, ['pause', 'validate']);
  expect(paused.code).toBe(0);
  expect(paused.stdout).toContain('paused');
  await eventually(() => expect(stage.worker.notReady()).toContain('paused by an operator'), 10_000);
  expect((await metrics.stagePaused.get()).values.find((v) => v.labels.stage === 'validate')?.value).toBe(1);
  const length = await fx.redis.xlen(validated());
  await acceptEvents(fx.redis, fx.keys, [spaceCreated(100)]);
  await stays(async () => expect(await fx.redis.xlen(validated())).toBe(length), 1500);

  const resumed = await atlasOn(fx.prefix, ['resume', 'validate']);
  expect(resumed.code).toBe(0);
  await eventually(async () => (await fx.redis.xlen(validated())) === length + 1, 30_000);
  expect(stage.worker.notReady()).toBeNull();
  expect((await metrics.stagePaused.get()).values.find((v) => v.labels.stage === 'validate')?.value).toBe(0);

  // Every job listed, finished, with its result.
  const jobs = await atlasOn(fx.prefix, ['jobs', '--json']);
  const listed = JSON.parse(jobs.stdout) as Array<{
    kind: string;
    state: string;
    result: { summary: string };
  }>;
  expect(listed.map((j) => [j.kind, j.state])).toEqual([
    ['resume', 'completed'],
    ['pause', 'completed'],
    ['replay', 'completed'],
  ]);
  const missing = await atlasOn(fx.prefix, ['jobs', 'validate-replay-00000000']);
  expect(missing.code).toBe(3);

  // The control queue's keys are the pipeline's: deleting the prefix's keys removes them all.
  await stage.stop();
  expect((await keysMatching(fx.redis, `{${fx.prefix}}:control:validate:*`)).length).toBeGreaterThan(0);
  await deletePipelineKeys(fx.redis, fx.keys);
  expect(await keysMatching(fx.redis, `*${fx.prefix}*`)).toEqual([]);
}, 240_000);
