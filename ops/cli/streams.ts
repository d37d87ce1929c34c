/**
 * `atlas streams` (the pipeline at a glance, in pipeline order) and `atlas cleanup` (remove a
 * pipeline's keys and, if asked, its topic).
 */
import type { Command } from 'commander';
import type { Redis } from 'ioredis';
import { deletePipelineKeys, pipelineKeys } from '../../pipeline/cleanup.ts';
import type { Beat } from '../../pipeline/heartbeat.ts';
import {
  describeHealth,
  describeStreams,
  knownPrefixes,
  printHealth,
  type StreamView,
} from '../../pipeline/inspect.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { isPaused } from '../../pipeline/pause.ts';
import { workerStageNames } from '../../stages/names.ts';
import { pipelineStreams } from '../../stages/streams.ts';
import { RefusedError } from './errors.ts';
import { ageOf, printJson, table } from './output.ts';
import { withRedis } from './session.ts';

export interface StageView {
  stage: string;
  state: 'paused' | 'active' | 'standby' | 'none';
  /** The consumer holding the stage's lease (a singleton's active instance), or null. */
  leaseHolder: string | null;
  instances: number;
  problems: string[];
}

/**
 * Every stream worker of the pipeline in order (then any other stage that ran on the prefix). The
 * door is not among them: it keeps no heartbeat, and its /ready is the pipeline's health above.
 */
async function describeStages(redis: Redis, k: Keys, beats: Beat[]): Promise<StageView[]> {
  const stageNames: string[] = [...workerStageNames];
  const others = [...new Set(beats.map((b) => b.stage))].filter((s) => !stageNames.includes(s)).sort();
  const views: StageView[] = [];
  for (const stage of [...stageNames, ...others]) {
    const mine = beats.filter((b) => b.stage === stage);
    const active = mine.filter((b) => b.role === 'active');
    const holder = active.find((b) => b.singleton);
    const state = (await isPaused(redis, k, stage))
      ? 'paused'
      : active.length > 0
        ? 'active'
        : mine.length > 0
          ? 'standby'
          : 'none';
    views.push({
      stage,
      state,
      leaseHolder: holder?.consumer ?? null,
      instances: mine.length,
      problems: mine.flatMap((b) => [...(b.problem ? [b.problem] : []), ...(b.stalled ? ['stalled'] : [])]),
    });
  }
  return views;
}

function streamRows(views: StreamView[]): Array<Array<string | number>> {
  return views.flatMap((v) =>
    v.groups.length === 0
      ? [[v.stream, v.length, '-', '-', '-', '-', '-']]
      : v.groups.map((g) => [
          v.stream,
          v.length,
          g.name,
          g.consumers,
          g.lag ?? '?',
          g.pending,
          ageOf(g.oldestPendingAgeMs),
        ]),
  );
}

export function register(program: Command): void {
  program
    .command('streams')
    .description(
      'the pipeline in order: each stream (length, groups, lag, pending, oldest pending), each stage (state, lease holder, instances), and what keeps it from being ready',
    )
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const seen = await withRedis(async (redis, k) => {
        const views = await describeStreams(redis, k, pipelineStreams);
        const health = await describeHealth(redis, k);
        const stages = await describeStages(redis, k, health.instances);
        const others = views.length === 0 ? await knownPrefixes(redis) : [];
        return { prefix: k.prefix, views, health, stages, others };
      });
      const { prefix, views, health, stages, others } = seen;
      if (opts.json)
        return printJson({ prefix, streams: views, stages, ...health, ...(views.length ? {} : { others }) });
      if (views.length === 0) return console.log(noStreams(prefix, others));
      console.log(`pipeline ${prefix}`);
      printHealth(health);
      console.log('');
      console.log(
        table(
          ['stream', 'length', 'group', 'consumers', 'lag', 'pending', 'oldest pending'],
          streamRows(views),
        ),
      );
      console.log('');
      console.log(
        table(
          ['stage', 'state', 'lease holder', 'instances', 'problems'],
          stages.map((s) => [
            s.stage,
            s.state,
            s.leaseHolder ?? '-',
            s.instances,
            s.problems.join('; ') || '-',
          ]),
        ),
      );
    });

  program
    .command('cleanup')
    .description(
      'remove every key of a pipeline (its prefix) and, with --topic, its Kafka topic; needs --yes',
    )
    .option('--topic', 'also delete the Kafka topic KAFKA_TOPIC_CANONICAL')
    .option('--yes', 'do it')
    .option('--dry-run', 'list what would be removed, change nothing')
    .action(async (opts: { topic?: boolean; yes?: boolean; dryRun?: boolean }) => {
      const { prefix, found, config } = await withRedis(async (redis, k, config) => ({
        prefix: k.prefix,
        found: await pipelineKeys(redis, k),
        config,
      }));
      const topic = opts.topic && config.KAFKA_BROKER ? config.KAFKA_TOPIC_CANONICAL : undefined;
      const output = topic ? await import('./kafka-output.ts') : undefined;
      const topicThere = output ? await output.topicExists(config) : false;
      const what = `${found.length} key${found.length === 1 ? '' : 's'} of prefix ${prefix}${topicThere ? ` and Kafka topic ${topic}` : ''}`;
      if (opts.dryRun) {
        for (const key of found) console.log(key);
        if (topicThere) console.log(`kafka topic ${topic}`);
        return console.log(`dry run: would remove ${what}`);
      }
      if (!opts.yes)
        throw new RefusedError(`would remove ${what}; add --yes to do it (or --dry-run to list)`);
      const deleted = await withRedis((redis, k) => deletePipelineKeys(redis, k));
      if (topicThere) await output?.deleteTopic(config);
      console.log(
        `removed ${deleted} keys of prefix ${prefix}${topicThere ? ` and Kafka topic ${topic}` : ''}`,
      );
      if (opts.topic && !config.KAFKA_BROKER) console.log('KAFKA_BROKER is not set: no topic to remove');
    });
}

function noStreams(prefix: string, others: string[]): string {
  if (others.length === 0)
    return `no streams under prefix ${prefix}, nor under any other prefix in this Redis`;
  const hint = others.length === 1 ? ` (use --prefix ${others[0]})` : ' (use --prefix <one of them>)';
  return `no streams under prefix ${prefix}; found prefixes: ${others.join(', ')}${hint}`;
}
