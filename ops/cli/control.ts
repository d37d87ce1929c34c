/**
 * The control-plane commands: replay (preview, then --execute), rebuild, republish, snapshot,
 * pause / resume, and `jobs`. Each long operation is a job on the stage's control queue, run by
 * its active instance; the CLI waits for it with a progress bar (--no-wait prints its id).
 */
import { SingleBar } from 'cli-progress';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { type Config, loadConfig, secretsOf } from '../../pipeline/config.ts';
import { controlQueue, enqueue, findJob, type JobView, listJobs, viewJob } from '../../pipeline/control.ts';
import { replayRefusedFor } from '../../pipeline/control-jobs.ts';
import { type Keys, keys as keysFor } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { connectFailFast, type Redis, whenReady } from '../../pipeline/redis.ts';
import {
  describePlan,
  planReplay,
  ReplayRefusedError,
  type ReplayTarget,
  ReplayUsageError,
} from '../../pipeline/replay.ts';
import { redactText, redactUrl } from '../../pipeline/secrets.ts';
import type { Stage } from '../../pipeline/stage.ts';
import { workerStages } from '../../stages/index.ts';
import { normalizeHex } from '../../stages/topology/ids.ts';
import { CliError, NotFoundError, RefusedError, UsageError } from './errors.ts';

const POLL_MS = 250;

export function registerControl(program: Command): void {
  registerReplay(program);
  for (const [kind, what] of [
    ['pause', 'stop a stage from reading, without stopping its processes (they stay up and ready to resume)'],
    ['resume', 'let a paused stage read again'],
  ] as const)
    withWait(program.command(kind).description(what).argument('<stage>')).action(
      async (name: string, opts: WaitOptions) => {
        await stageOf(name);
        await runJob(name, kind, {}, opts);
      },
    );
  withWait(
    program
      .command('rebuild')
      .description(
        'rebuild a stateful stage (transitive, canonical) from the events; downstream gets exactly the graphs that differ',
      )
      .argument('<stage>')
      .option(
        '--at <seq>',
        'start from the newest snapshot at or before this event seq (default: the newest; 0: from the start)',
      ),
  ).action(async (name: string, opts: WaitOptions & { at?: string }) => {
    await stageWithJob(name, 'rebuild');
    if (opts.at !== undefined && !/^\d+$/.test(opts.at))
      throw new UsageError(`--at must be an event seq (a whole number), got ${opts.at}`);
    await runJob(name, 'rebuild', opts.at === undefined ? {} : { at: Number(opts.at) }, opts);
  });
  withWait(
    program
      .command('snapshot')
      .description("take a snapshot of a stateful stage's state now (rebuilds start from the newest one)")
      .argument('<stage>'),
  ).action(async (name: string, opts: WaitOptions) => {
    await stageWithJob(name, 'snapshot');
    await runJob(name, 'snapshot', {}, opts);
  });
  withWait(
    program
      .command('republish')
      .description(
        'emit the current graph of a root (or of every root) again, as a new update with the next sequence number',
      )
      .option('--root <id>', 'the root space id')
      .option('--all', 'every root'),
  ).action(async (opts: WaitOptions & { root?: string; all?: boolean }) => {
    if (Boolean(opts.root) === Boolean(opts.all))
      throw new UsageError('give --root <id> or --all (one of them)');
    const root = opts.root === undefined ? undefined : normalizeHex(opts.root, 16);
    if (root === null) throw new UsageError(`not a space id: ${opts.root}`);
    await runJob('canonical', 'republish', root ? { root } : { all: true }, opts);
  });
  registerJobs(program);
}

interface WaitOptions {
  wait: boolean;
  json?: boolean;
}

function withWait(cmd: Command): Command {
  return cmd
    .option('--no-wait', 'enqueue the job and print its id, without waiting for it')
    .option('--json', 'print the finished job as JSON');
}

function registerReplay(program: Command): void {
  withWait(
    program
      .command('replay')
      .description(
        'make a stateless stage read its input again; previews what each group would re-read, acts only with --execute',
      )
      .argument('<stage>')
      .option('--to-earliest', 'from the oldest entry the stream retains')
      .option('--from <id|seq>', 'from this entry id (ms-seq) or event seq (a number), included')
      .option('--to-datetime <iso>', 'from the first entry at or after this time (ISO 8601)')
      .option('--shift-by <n>', 'back by n entries (a negative number)')
      .option('--execute', 'do it (without: only the preview)'),
  ).action(async (name: string, opts: ReplayOptions) => {
    const target = replayTarget(opts);
    const stage = await stageOf(name);
    const refused = replayRefusedFor(stage);
    if (refused) throw new RefusedError(refused);
    const plan = await withRedis((redis, k) =>
      planReplay(redis, k.stream(stage.input), stage.name, target).catch(asCliError),
    );
    if (!opts.execute) {
      if (opts.json) return console.log(JSON.stringify({ preview: true, groups: [plan] }, null, 2));
      console.log(`preview (nothing changed; add --execute to replay):\n  ${describePlan(plan)}`);
      return;
    }
    await runJob(name, 'replay', { target }, opts);
  });
}

interface ReplayOptions extends WaitOptions {
  toEarliest?: boolean;
  from?: string;
  toDatetime?: string;
  shiftBy?: string;
  execute?: boolean;
}

function replayTarget(opts: ReplayOptions): ReplayTarget {
  const given = [opts.toEarliest, opts.from, opts.toDatetime, opts.shiftBy].filter((v) => v !== undefined);
  if (given.length !== 1)
    throw new UsageError(
      'give exactly one of --to-earliest, --from <id|seq>, --to-datetime <iso>, --shift-by <n>',
    );
  if (opts.toEarliest) return { kind: 'earliest' };
  if (opts.from !== undefined) return { kind: 'from', at: opts.from };
  if (opts.toDatetime !== undefined) return { kind: 'datetime', at: opts.toDatetime };
  if (!/^-?\d+$/.test(opts.shiftBy!))
    throw new UsageError(`--shift-by must be a whole number, got ${opts.shiftBy}`);
  return { kind: 'shift', by: Number(opts.shiftBy) };
}

function asCliError(err: unknown): never {
  if (err instanceof ReplayUsageError) throw new UsageError(err.message);
  if (err instanceof ReplayRefusedError) throw new RefusedError(err.message);
  throw err;
}

function registerJobs(program: Command): void {
  program
    .command('jobs')
    .description('control jobs, newest first: state, progress, result or the reason it failed')
    .argument('[id]', 'one job in full')
    .option('--stage <name>', 'only the jobs of this stage')
    .option('-n, --count <n>', 'at most this many', '20')
    .option('--json', 'machine-readable output')
    .action(async (id: string | undefined, opts: { stage?: string; count: string; json?: boolean }) => {
      if (opts.stage !== undefined) await stageOf(opts.stage);
      const count = Number(opts.count);
      if (!Number.isInteger(count) || count < 1)
        throw new UsageError(`--count must be a positive number, got ${opts.count}`);
      const stages = opts.stage ? [opts.stage] : Object.keys(workerStages);
      if (id !== undefined) {
        const job = await withRedis((redis, k) => findJob(redis, k, stages, id));
        if (!job) throw new NotFoundError(`no control job ${id}`);
        return console.log(JSON.stringify(job, null, 2));
      }
      const jobs = await withRedis((redis, k) => listJobs(redis, k, stages, count));
      if (opts.json) return console.log(JSON.stringify(jobs, null, 2));
      if (jobs.length === 0) return console.log('no control jobs');
      const table = new Table({
        head: ['id', 'stage', 'job', 'state', 'progress', 'tries', 'created', 'result / reason'],
        style: { head: [], border: [], compact: true },
        colWidths: [null, null, null, null, null, null, null, 72],
        wordWrap: true,
      });
      for (const j of jobs)
        table.push([
          j.id,
          j.stage,
          j.kind,
          j.state,
          `${j.progress}%`,
          j.attempts,
          new Date(j.createdAt).toISOString(),
          j.result?.summary ?? j.reason ?? '',
        ]);
      console.log(table.toString());
    });
}

/** Enqueues a job on the stage's queue and (unless --no-wait) follows it to its end. */
async function runJob(
  stage: string,
  kind: string,
  data: Record<string, unknown>,
  opts: WaitOptions,
): Promise<void> {
  await withRedis(async (redis, k) => {
    const queue = controlQueue(redis, k, stage);
    try {
      const job = await enqueue(queue, kind, data);
      if (!opts.wait) {
        if (opts.json) console.log(JSON.stringify({ id: job.id, stage, kind }));
        else console.log(`job ${job.id} (${kind} on ${stage}) queued; follow it with: atlas jobs ${job.id}`);
        return;
      }
      const view = await follow(redis, k, stage, job.id!);
      if (opts.json) console.log(JSON.stringify(view, null, 2));
      else if (view.state === 'completed') console.log(view.result?.summary ?? 'done');
      if (view.state === 'failed')
        throw new CliError(`job ${view.id} (${kind} on ${stage}) failed: ${view.reason}`);
    } finally {
      await queue.close();
    }
  });
}

/** Polls the job until it completes or fails for good; a bar on a terminal, nothing in a pipe. */
async function follow(redis: Redis, keys: Keys, stage: string, id: string): Promise<JobView> {
  const bar = new SingleBar({
    format: `${stage} {kind} [{bar}] {percentage}% {state}`,
    stream: process.stderr,
  });
  const tty = process.stderr.isTTY === true;
  let started = false;
  let waitingSaid = false;
  const queue = controlQueue(redis, keys, stage);
  try {
    for (;;) {
      const job = await queue.getJob(id);
      if (!job) throw new NotFoundError(`job ${id} is gone from the queue of ${stage}`);
      const view = await viewJob(job, stage);
      if (view.state === 'completed' || view.state === 'failed') {
        // The state is read after the job's fields: read them again, or a job that finished in
        // between shows as finished without its result.
        const final = await queue.getJob(id);
        const ended = final ? await viewJob(final, stage) : view;
        if (started) bar.update(ended.progress, { state: ended.state });
        return ended;
      }
      if (view.state === 'waiting' && !waitingSaid && Date.now() - view.createdAt > 2000) {
        process.stderr.write(
          `job ${id} waits for an active instance of ${stage} (is one running? atlas streams)\n`,
        );
        waitingSaid = true;
      }
      if (tty && !started) {
        bar.start(100, view.progress, { kind: view.kind, state: view.state });
        started = true;
      } else if (started) bar.update(view.progress, { state: view.state });
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    if (started) bar.stop();
    await queue.close();
  }
}

/** The stage as its factory makes it (name, input, order, jobs); exit 2 naming the valid ones. */
async function stageOf(name: string): Promise<Stage> {
  const factory = workerStages[name];
  if (!factory)
    throw new UsageError(`no stage ${name}; the stages are: ${Object.keys(workerStages).join(', ')}`);
  const config = loadConfig();
  const redis = connectFailFast(config, 'atlas-cli', createLogger('silent'));
  redis.disconnect(); // the factory only keeps it for later; nothing is read here
  return factory({
    config,
    redis,
    keys: keysFor(config.ATLAS_PREFIX),
    log: createLogger('silent'),
    lease: () => undefined,
  });
}

async function stageWithJob(name: string, kind: string): Promise<Stage> {
  const stage = await stageOf(name);
  if (!stage.jobs?.[kind]) {
    const able = [];
    for (const [other] of Object.entries(workerStages))
      if ((await stageOf(other)).jobs?.[kind]) able.push(other);
    throw new UsageError(`stage ${name} has no ${kind}; the stages that have: ${able.join(', ')}`);
  }
  return stage;
}

/** A short-lived Redis session; an unreachable Redis is a one-line error (exit 1). */
async function withRedis<T>(fn: (redis: Redis, k: Keys) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const redis = connectFailFast(config, 'atlas-cli', createLogger('silent'), 3000);
  let refusal: Error | undefined;
  try {
    if (!(await whenReady(redis, 3000, true, (err) => (refusal = err)))) throw unreachable(config, refusal);
    return await fn(redis, keysFor(config.ATLAS_PREFIX));
  } finally {
    redis.disconnect();
  }
}

function unreachable(config: Config, err: Error | undefined): CliError {
  const why = redactText(err?.message ?? 'no answer', secretsOf(config));
  return new CliError(`cannot reach Redis at ${redactUrl(config.REDIS_URL)}: ${why}`);
}
