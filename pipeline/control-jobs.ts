/**
 * The control jobs every stage has (its own come from its factory, `Stage.jobs`): pause and
 * resume, replay, and redrive / purge of its dead letters. Each is idempotent: run twice, the
 * second run finds the work done (a key set, a group already moved, ids no longer in the DLQ).
 */
import { type JobContext, type JobHandler, JobRefused, type JobResult } from './control.ts';
import { listDeadLetters, purge, redrive } from './dlq.ts';
import type { Keys } from './keys.ts';
import { pauseKey } from './pause.ts';
import {
  describePlan,
  executeReplay,
  planReplay,
  REPLAYED_DEAD_TTL_S,
  ReplayRefusedError,
  type ReplayTarget,
  ReplayUsageError,
  replayedDeadKey,
} from './replay.ts';
import { compareStreamIds } from './retention.ts';
import type { Stage } from './stage.ts';

/** Dead letters acted on per call: progress moves, and each call stays short. */
const DLQ_CHUNK = 100;

/** Why a replay of `stage` without a rebuild is refused, or null. */
export function replayRefusedFor(stage: Pick<Stage, 'name' | 'order'>): string | null {
  if (!stage.order) return null;
  return `stage ${stage.name} applies its input in order and keeps state: re-read entries would be dropped as already applied. Rebuild its state instead: atlas rebuild ${stage.name}`;
}

export function runtimeJobs(stage: Stage, keys: Keys): Record<string, JobHandler> {
  return {
    pause: async (_data, ctx) => {
      await ctx.redis.set(pauseKey(keys, stage.name), new Date().toISOString());
      return done(ctx, { summary: `stage ${stage.name} paused: it reads nothing until resumed` });
    },
    resume: async (_data, ctx) => {
      await ctx.redis.del(pauseKey(keys, stage.name));
      return done(ctx, { summary: `stage ${stage.name} resumed` });
    },
    replay: (data, ctx) => replayJob(stage, keys, data, ctx),
    redrive: (data, ctx) => dlqJob(stage, keys, data, ctx, 'redrive'),
    purge: (data, ctx) => dlqJob(stage, keys, data, ctx, 'purge'),
  };
}

async function done(ctx: JobContext, result: JobResult): Promise<JobResult> {
  await ctx.done(result);
  return result;
}

async function replayJob(
  stage: Stage,
  keys: Keys,
  data: Record<string, unknown>,
  ctx: JobContext,
): Promise<JobResult> {
  const refused = replayRefusedFor(stage);
  if (refused) throw new JobRefused(refused);
  const stream = keys.stream(stage.input);
  let plan: Awaited<ReturnType<typeof planReplay>>;
  try {
    plan = await planReplay(ctx.redis, stream, stage.name, data.target as ReplayTarget);
  } catch (err) {
    if (err instanceof ReplayUsageError || err instanceof ReplayRefusedError)
      throw new JobRefused(err.message);
    throw err;
  }
  const dead = await rememberDeadLetters(ctx, keys, stage.name, plan.firstId, plan.lastId);
  await executeReplay(ctx.redis, plan);
  return done(ctx, {
    summary: `${describePlan(plan)}; ${dead} of them already dead-lettered (not dead-lettered again)`,
    entries: plan.count,
    from: plan.firstId,
    to: plan.lastId,
    alreadyDeadLettered: dead,
  });
}

/** The source ids of the stage's dead letters within the replayed range (see replayedDeadKey). */
async function rememberDeadLetters(
  ctx: JobContext,
  keys: Keys,
  stage: string,
  first: string,
  last: string,
): Promise<number> {
  const ids = (await listDeadLetters(ctx.redis, keys, { stage }))
    .map((d) => d.entryId)
    .filter((id) => /^\d+-\d+$/.test(id) && inRange(id, first, last));
  if (ids.length === 0) return 0;
  const key = replayedDeadKey(keys, stage);
  await ctx.redis
    .multi()
    .sadd(key, ...ids)
    .expire(key, REPLAYED_DEAD_TTL_S)
    .exec();
  return ids.length;
}

function inRange(id: string, first: string, last: string): boolean {
  return compareStreamIds(first, id) <= 0 && compareStreamIds(id, last) <= 0;
}

/** Redrive or purge of dead letters (named ids, or all of this stage's with a reason filter). */
async function dlqJob(
  stage: Stage,
  keys: Keys,
  data: Record<string, unknown>,
  ctx: JobContext,
  action: 'redrive' | 'purge',
): Promise<JobResult> {
  const named = Array.isArray(data.ids) ? (data.ids as string[]) : null;
  const reason = typeof data.reason === 'string' ? data.reason : undefined;
  const ids =
    named ?? (await listDeadLetters(ctx.redis, keys, { stage: stage.name, reason })).map((d) => d.id);
  let acted = 0;
  for (let i = 0; i < ids.length; i += DLQ_CHUNK) {
    const chunk = ids.slice(i, i + DLQ_CHUNK);
    acted +=
      action === 'redrive'
        ? (await redrive(ctx.redis, keys, chunk)).length
        : (await purge(ctx.redis, keys, chunk)).length;
    await ctx.progress(((i + chunk.length) / ids.length) * 100);
  }
  // A retry finds the ids done by the killed run gone from the DLQ: they count as already done.
  return done(ctx, {
    summary: `${action === 'redrive' ? 'redriven' : 'purged'} ${acted} of ${ids.length} dead letters of ${stage.name}${ids.length > acted ? ` (${ids.length - acted} were no longer in the DLQ)` : ''}`,
    [action === 'redrive' ? 'redriven' : 'purged']: acted,
    asked: ids.length,
  });
}
