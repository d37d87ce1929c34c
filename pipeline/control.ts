/**
 * The control plane: long operations (replay, rebuild, republish, redrive, snapshot, pause…) are
 * BullMQ jobs on one queue per stage, in the pipeline's Redis under its hash tag
 * (`{prefix}:control:<stage>:…`, so `deletePipelineKeys` removes them too). The stage's active
 * instance takes its jobs one at a time at a safe point between batches (Worker.betweenBatches),
 * with BullMQ's manual processing: a job whose instance dies (kill -9) loses its lock, is moved
 * back to wait by the stalled check of any instance, and is run again by the next active one.
 * A job that commits writes records its result in the same atomic step (`{prefix}:control:done:<id>`):
 * a retry after that commit reports the recorded result instead of doing the work twice.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Worker as BullWorker, type Job, type JobType, Queue, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';
import type { Logger } from './log.ts';
import type { Step } from './stage.ts';

/** What a job reports when it is done: one line for the operator, and its counts. */
export interface JobResult {
  summary: string;
  [count: string]: unknown;
}

export interface JobContext {
  redis: Redis;
  keys: Keys;
  log: Logger;
  /** Progress in percent, shown by `atlas jobs` and the CLI's bar. */
  progress(percent: number): Promise<void>;
  /**
   * Applies writes in one atomic, fenced step of the stage (like a batch's commit), recording
   * `result` with them when given: the job is then done even if its instance dies right after.
   */
  commit(fill: (step: Step) => void | Promise<void>, result?: JobResult): Promise<void>;
  /** Records the result of a job whose writes were not made through `commit`. */
  done(result: JobResult): Promise<void>;
}

/** What the runtime gives the runner: the stage's connection and its fenced commit. */
export interface BaseContext {
  redis: Redis;
  keys: Keys;
  commit(fill: (step: Step) => void | Promise<void>): Promise<void>;
  /** Settles the stage's read in flight (read ahead) so a job never races a batch. */
  quiesce(): Promise<void>;
}

export type JobHandler = (data: Record<string, unknown>, ctx: JobContext) => Promise<JobResult>;

/** A job's arguments are wrong or unsafe: retrying cannot help, it fails at once with this reason. */
export class JobRefused extends UnrecoverableError {
  constructor(message: string) {
    super(message);
    this.name = 'JobRefused';
  }
}

/** How long a running job's lock lasts without renewal: a killed instance's job is free after this. */
const LOCK_MS = 5000;
/** How often instances look for jobs whose holder died. */
const STALLED_CHECK_MS = 3000;
const ATTEMPTS = 3;
/** How often an active instance asks for a job: not on every batch, a busy stage runs many a second. */
const POLL_MS = 250;

export function controlPrefix(keys: Keys): string {
  return keys.of('control');
}

/** Outside BullMQ's own keys (`{prefix}:control:<stage>:…`), whatever ids it makes. */
export function doneKey(keys: Keys, jobId: string): string {
  return keys.of('control-done', jobId);
}

/** The queue a stage's jobs go to (the CLI's side); close it after use. */
export function controlQueue(redis: Redis, keys: Keys, stage: string): Queue {
  return new Queue(stage, { connection: redis, prefix: controlPrefix(keys) });
}

export async function enqueue(queue: Queue, kind: string, data: Record<string, unknown>): Promise<Job> {
  return queue.add(kind, data, {
    // Unique across the stages' queues (BullMQ numbers each queue from 1): `atlas jobs <id>` finds one.
    jobId: `${queue.name}-${kind}-${randomBytes(4).toString('hex')}`,
    attempts: ATTEMPTS,
    backoff: { type: 'fixed', delay: 1000 },
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: 1000 },
  });
}

export interface JobView {
  id: string;
  stage: string;
  kind: string;
  state: string;
  progress: number;
  attempts: number;
  data: Record<string, unknown>;
  result: JobResult | null;
  reason: string | null;
  createdAt: number;
  finishedAt: number | null;
}

const LISTED: JobType[] = ['active', 'waiting', 'delayed', 'completed', 'failed'];

export async function viewJob(job: Job, stage: string): Promise<JobView> {
  return {
    id: job.id ?? '',
    stage,
    kind: job.name,
    state: await job.getState(),
    progress: typeof job.progress === 'number' ? job.progress : 0,
    attempts: job.attemptsMade,
    data: job.data as Record<string, unknown>,
    result: (job.returnvalue as JobResult | null) ?? null,
    reason: job.failedReason ?? null,
    createdAt: job.timestamp,
    finishedAt: job.finishedOn ?? null,
  };
}

/** The newest jobs of each named stage, newest first. */
export async function listJobs(redis: Redis, keys: Keys, stages: string[], count = 20): Promise<JobView[]> {
  const views: JobView[] = [];
  for (const stage of stages) {
    const queue = controlQueue(redis, keys, stage);
    try {
      for (const job of await queue.getJobs(LISTED, 0, count - 1, false))
        if (job) views.push(await viewJob(job as Job, stage));
    } finally {
      await queue.close();
    }
  }
  return views.sort((a, b) => b.createdAt - a.createdAt).slice(0, count);
}

/** Finds a job by id in the queues of the named stages. */
export async function findJob(
  redis: Redis,
  keys: Keys,
  stages: string[],
  id: string,
): Promise<JobView | undefined> {
  for (const stage of stages) {
    const queue = controlQueue(redis, keys, stage);
    try {
      const job = await queue.getJob(id);
      if (job) return viewJob(job as Job, stage);
    } finally {
      await queue.close();
    }
  }
  return undefined;
}

export interface RunnerOptions {
  stage: string;
  handlers: Record<string, JobHandler>;
  /** A connection of its own: BullMQ's commands must not queue behind the worker's blocking reads. */
  connection: Redis;
  keys: Keys;
  log: Logger;
}

/** Takes and runs the jobs of one stage, in the instance that calls `runDue` (its active one). */
export class ControlRunner {
  private readonly opts: RunnerOptions;
  private readonly bull: BullWorker;
  private readonly token = randomUUID();
  private lastPoll = 0;

  constructor(opts: RunnerOptions) {
    this.opts = opts;
    this.bull = new BullWorker(opts.stage, null, {
      connection: opts.connection,
      prefix: controlPrefix(opts.keys),
      lockDuration: LOCK_MS,
      stalledInterval: STALLED_CHECK_MS,
      maxStalledCount: ATTEMPTS,
      autorun: false,
    });
    this.bull.on('error', (err) => opts.log.warn({ err: err.message }, 'control queue error'));
    // Every instance, standbys included: the job of a dead active instance must come back.
    void this.bull.startStalledCheckTimer().catch(() => {});
  }

  /** Runs the stage's waiting jobs, one after another; `ctx` writes as the stage does. */
  async runDue(ctx: BaseContext): Promise<void> {
    if (Date.now() - this.lastPoll < POLL_MS) return;
    this.lastPoll = Date.now();
    for (;;) {
      const job = (await this.bull.getNextJob(this.token, { block: false })) as Job | undefined;
      if (!job) return;
      await this.runOne(job, ctx);
    }
  }

  private async runOne(job: Job, base: BaseContext): Promise<void> {
    const { keys, log } = this.opts;
    const jlog = log.child({ job: job.id, kind: job.name });
    const renew = setInterval(() => void job.extendLock(this.token, LOCK_MS).catch(() => {}), LOCK_MS / 3);
    try {
      await base.quiesce();
      const recorded = await base.redis.get(doneKey(keys, job.id!));
      const result = recorded
        ? (JSON.parse(recorded) as JobResult)
        : await this.handle(job, {
            ...base,
            log: jlog,
            progress: (p) => job.updateProgress(Math.max(0, Math.min(100, Math.round(p)))),
            commit: (fill, r) =>
              base.commit(async (step) => {
                await fill(step);
                if (r) step.write('SET', doneKey(keys, job.id!), JSON.stringify(r));
              }),
            done: async (r) => {
              await base.redis.set(doneKey(keys, job.id!), JSON.stringify(r), 'EX', DONE_TTL_S);
            },
          });
      if (recorded) jlog.info('job was done before its instance stopped; reporting its recorded result');
      await job.updateProgress(100);
      await job.moveToCompleted(result, this.token, false);
      await base.redis.expire(doneKey(keys, job.id!), DONE_TTL_S);
      jlog.info({ result }, 'control job done');
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      jlog.error({ err: error.message }, 'control job failed');
      await job.moveToFailed(error, this.token, false).catch(() => {});
    } finally {
      clearInterval(renew);
    }
  }

  private handle(job: Job, ctx: JobContext): Promise<JobResult> {
    const handler = this.opts.handlers[job.name];
    if (!handler)
      throw new JobRefused(
        `stage ${this.opts.stage} has no job ${job.name} (it has: ${Object.keys(this.opts.handlers).join(', ')})`,
      );
    return handler(job.data as Record<string, unknown>, ctx);
  }

  async close(): Promise<void> {
    await this.bull.close().catch(() => {});
  }
}

/** How long a job's recorded result is kept for a retry to find (a day: far beyond any retry). */
export const DONE_TTL_S = 24 * 3600;
