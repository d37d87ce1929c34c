/**
 * Redrive and purge of many dead letters as control jobs (the functions of pipeline/dlq.ts, run
 * by the stage's instance in chunks with progress): enqueued here as the CLI does, against a real
 * Redis with validate running in this process. A job asked again finds its work done.
 */
import { afterAll, expect, it } from 'vitest';
import { controlQueue, enqueue, findJob, type JobView } from '../../pipeline/control.ts';
import { listDeadLetters } from '../../pipeline/dlq.ts';
import { createValidate } from '../../stages/validate/index.ts';
import { testConfig } from '../support/config.ts';
import { acceptEvents } from '../support/control.ts';
import { envelope } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { useRedis } from '../support/redis.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('control-dlq');
afterAll(stopStages);

async function runJob(kind: string, data: Record<string, unknown>): Promise<JobView> {
  const queue = controlQueue(fx.redis, fx.keys, 'validate');
  try {
    const job = await enqueue(queue, kind, data);
    return await eventually(async () => {
      const view = await findJob(fx.redis, fx.keys, ['validate'], job.id!);
      expect(view?.state).toBe('completed');
      return view!;
    }, 60_000);
  } finally {
    await queue.close();
  }
}

it('redrives and purges dead letters as jobs, reporting counts', async () => {
  await startStage(createValidate, testConfig(fx.prefix));
  const BAD = 150; // more than one chunk of 100
  await acceptEvents(
    fx.redis,
    fx.keys,
    Array.from({ length: BAD }, (_, i) => envelope('space.created', { space_id: `bad-${i}` })),
  );
  await eventually(async () => expect(await fx.redis.xlen(fx.keys.dlq)).toBe(BAD), 60_000);
  const [first] = await listDeadLetters(fx.redis, fx.keys, { count: 1 });

  // One redriven: back on the input, fails again, dead-lettered anew; the old entry is gone.
  const redriven = await runJob('redrive', { ids: [first!.id] });
  expect(redriven.result).toMatchObject({ redriven: 1, asked: 1 });
  expect(redriven.progress).toBe(100);
  await eventually(async () => expect(await fx.redis.xlen(fx.keys.dlq)).toBe(BAD), 30_000);
  const again = await runJob('redrive', { ids: [first!.id] });
  expect(again.result).toMatchObject({ redriven: 0, asked: 1 });
  expect(again.result?.summary).toContain('1 were no longer in the DLQ');

  const purged = await runJob('purge', { reason: 'invalid_payload' });
  expect(purged.result).toMatchObject({ purged: BAD, asked: BAD });
  expect(await fx.redis.xlen(fx.keys.dlq)).toBe(0);
  expect(Number((await fx.redis.hget(fx.keys.dlqCounts, 'validate|invalid_payload')) ?? 0)).toBe(0);
}, 180_000);
