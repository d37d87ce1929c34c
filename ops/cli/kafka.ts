/** `atlas kafka init` and `atlas tail`: the output side, Kafka or the Redis stream sink. */
import type { Command } from 'commander';
import { loadConfig } from '../../pipeline/config.ts';
import { normalizeHex } from '../../stages/topology/ids.ts';
import { UsageError } from './errors.ts';
import type { TailOptions } from './kafka-output.ts';
import { warn } from './output.ts';
import { positiveInt } from './session.ts';

export function register(program: Command): void {
  const kafka = program.command('kafka').description('the Kafka output');
  kafka
    .command('init')
    .description(
      'create the output topic (KAFKA_TOPIC_CANONICAL) with the pipeline settings, or check the one there and warn on each difference',
    )
    .option('--partitions <n>', 'partitions of the topic', positiveInt('--partitions'), 6)
    .option('--replication-factor <n>', 'replicas of each partition', positiveInt('--replication-factor'), 1)
    .action(async (opts: { partitions: number; replicationFactor: number }) => {
      const { kafkaInit } = await import('./kafka-output.ts');
      const { text, warnings } = await kafkaInit(loadConfig(), opts);
      console.log(text);
      for (const w of warnings) warn(w);
    });

  program
    .command('tail')
    .description(
      'decode and print the output messages (Kafka, or the Redis stream sink without KAFKA_BROKER)',
    )
    .option('--from-beginning', 'start at the oldest message still kept')
    .option('--root <id>', 'only this root')
    .option('--exit', 'stop after what is there now instead of following')
    .option('--json', 'one JSON object per message and line, with its partition and offset (or stream id)')
    .action(async (opts: TailOptions) => {
      const root = opts.root === undefined ? undefined : normalizeHex(opts.root, 16);
      if (root === null) throw new UsageError(`not a space id: ${opts.root}`);
      const { tail } = await import('./kafka-output.ts');
      await tail(loadConfig(), { ...opts, root });
    });
}
