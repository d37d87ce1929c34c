/**
 * Running and steering the stages: `up`, `run`, `recover`, and `canonical show` (what
 * the pipeline emitted last for a root). Each loads its code when run: the stages, protobuf and
 * kafkajs would otherwise make every command start slowly.
 */
import type { Command } from 'commander';
import { loadConfig } from '../../pipeline/config.ts';
import { createLogger } from '../../pipeline/log.ts';
import { stageNames } from '../../stages/names.ts';
import { normalizeHex } from '../../stages/topology/ids.ts';
import { NotFoundError, UsageError } from './errors.ts';
import { withRedis } from './session.ts';

export function register(program: Command): void {
  program
    .command('up')
    .description('run every stage in this process (the embedded default)')
    .action(async () => {
      const config = loadConfig();
      const { runStages, upStages } = await import('./process.ts');
      await runStages(upStages(config), config, createLogger(config.LOG_LEVEL));
    });

  program
    .command('run')
    .description(
      `run the chosen stages (${stageNames.join(', ')}); start several processes of a stateless stage to scale it; a+b+c runs stages as one chain (no streams between them)`,
    )
    .argument('<stage...>')
    .action(async (names: string[]) => {
      const config = loadConfig();
      const { runStages } = await import('./process.ts');
      await runStages(names, config, createLogger(config.LOG_LEVEL));
    });

  program
    .command('canonical')
    .description('the canonical graphs the pipeline has emitted')
    .command('show')
    .argument('<root>', 'root space id')
    .option('--json', 'exactly {root_id, sequence_number, canonical_space_ids, tree}')
    .description('the current (last emitted) canonical graph of a root')
    .action(async (rootArg: string, opts: { json?: boolean }) => {
      const root = normalizeHex(rootArg, 16);
      if (!root) throw new UsageError(`not a space id: ${rootArg}`);
      const { canonicalStore, readCurrent } = await import('../../stages/canonical/store.ts');
      const { jsonView, textView } = await import('../../stages/canonical/show.ts');
      const current = await withRedis((redis, k) => readCurrent(redis, canonicalStore(k), root));
      if (!current)
        throw new NotFoundError(
          `no canonical graph held for root ${root}: none emitted yet, or canonical's store was lost (atlas rebuild canonical)`,
        );
      const { DeltaReceiver } = await import('../../stages/topology/graph-delta.ts');
      const held = new DeltaReceiver();
      held.apply(current.graph);
      const graph = held.wire(root);
      const { emitted } = current;
      process.stdout.write(
        `${opts.json ? jsonView(graph, emitted.sequence_number) : textView(graph, emitted.sequence_number)}\n`,
      );
    });

  program
    .command('recover')
    .description(
      'after lost state: continue every root after its last sequence number in the output, print the cursor to replay the source from, bring the pipeline back',
    )
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const config = loadConfig();
      const { describeRecovery, recover } = await import('./recover.ts');
      const done = await withRedis((redis, k) => recover(config, redis, k));
      console.log(opts.json ? JSON.stringify(done, null, 2) : describeRecovery(done));
    });
}
