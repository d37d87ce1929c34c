#!/usr/bin/env node
/** The `atlas` command: run stages, inspect streams, work the dead-letter stream. */
import { Command } from 'commander';
import { loadConfig, settingsTable } from '../../pipeline/config.ts';
import { listDeadLetters, purge, redrive, showDeadLetter } from '../../pipeline/dlq.ts';
import { describeStreams, replay } from '../../pipeline/inspect.ts';
import { keys } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { connectFailFast, whenReady } from '../../pipeline/redis.ts';
import { jsonView, textView } from '../../stages/canonical/show.ts';
import { canonicalStore, readCurrent } from '../../stages/canonical/store.ts';
import { stageNames } from '../../stages/index.ts';
import { normalizeHex } from '../../stages/topology/ids.ts';
import { kafkaInit, tail } from './output.ts';
import { runStages, UsageError } from './process.ts';

const program = new Command('atlas')
  .description('Atlas pipeline: space-topology events → canonical trust graphs → Kafka')
  .showHelpAfterError();

/** A short-lived Redis session for the inspection commands. */
async function withRedis<T>(
  fn: (redis: ReturnType<typeof connectFailFast>, k: ReturnType<typeof keys>) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  const redis = connectFailFast(config.REDIS_URL, 'atlas-cli');
  redis.on('error', () => {});
  try {
    if (!(await whenReady(redis, 3000, true))) throw new Error('ECONNREFUSED');
    return await fn(redis, keys(config.ATLAS_PREFIX));
  } catch (err) {
    if (
      err instanceof Error &&
      /ECONNREFUSED|Stream isn't writeable|Connection is closed|timed out/.test(err.message)
    ) {
      throw new UsageError(
        `cannot reach Redis at ${config.REDIS_URL} (start it with: ops/services up redis)`,
      );
    }
    throw err;
  } finally {
    redis.disconnect();
  }
}

program
  .command('up')
  .description('run every stage in this process (the embedded default)')
  .action(async () => {
    const config = loadConfig();
    await runStages(stageNames, config, createLogger(config.LOG_LEVEL));
  });

program
  .command('run')
  .description(
    `run the chosen stages (${stageNames.join(', ')}); start several processes of a stateless stage to scale it`,
  )
  .argument('<stage...>')
  .action(async (names: string[]) => {
    const config = loadConfig();
    await runStages(names, config, createLogger(config.LOG_LEVEL));
  });

program
  .command('streams')
  .description('each stream: length, consumer groups, lag, pending, age of the oldest pending entry')
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) => {
    const views = await withRedis((redis, k) => describeStreams(redis, k));
    if (opts.json) return console.log(JSON.stringify(views, null, 2));
    if (views.length === 0) return console.log('no streams yet');
    for (const v of views) {
      console.log(`${v.stream}  length=${v.length}`);
      for (const g of v.groups) {
        const age = g.oldestPendingAgeMs === null ? '-' : `${(g.oldestPendingAgeMs / 1000).toFixed(1)}s`;
        console.log(
          `  group ${g.name}: consumers=${g.consumers} lag=${g.lag ?? '?'} pending=${g.pending} oldest-pending=${age}`,
        );
      }
    }
  });

program
  .command('replay')
  .description('make a stage read its input again from a stream offset (an entry id, or 0 for the start)')
  .argument('<stage>')
  .requiredOption('--from <id>', 'stream entry id to replay after')
  .action(async (stage: string, opts: { from: string }) => {
    const { workerStages } = await import('../../stages/index.ts');
    const factory = workerStages[stage];
    if (!factory) throw new UsageError(`no stream worker named ${stage}`);
    await withRedis(async (redis, k) => {
      const config = loadConfig();
      const s = await factory({
        config,
        redis,
        keys: k,
        log: createLogger('silent'),
        lease: () => undefined,
      });
      await replay(redis, k.stream(s.input), s.name, opts.from);
      console.log(`stage ${stage} will read ${k.stream(s.input)} again after ${opts.from}`);
    });
  });

const dlq = program.command('dlq').description('the dead-letter stream');
dlq
  .command('list')
  .description('dead-lettered entries, oldest first')
  .option('--stage <name>')
  .option('--reason <code>')
  .option('-n, --count <n>', 'at most this many', (v) => Number.parseInt(v, 10), 100)
  .option('--json')
  .action(async (opts: { stage?: string; reason?: string; count: number; json?: boolean }) => {
    const items = await withRedis((redis, k) => listDeadLetters(redis, k, opts));
    if (opts.json) return console.log(JSON.stringify(items, null, 2));
    if (items.length === 0) return console.log('the dead-letter stream is empty');
    for (const d of items)
      console.log(`${d.id}  ${d.stage}  ${d.reason}  attempts=${d.attempts}  ${d.error}`);
  });
dlq
  .command('show')
  .argument('<id>')
  .description('one dead-lettered entry in full')
  .action(async (id: string) => {
    const d = await withRedis((redis, k) => showDeadLetter(redis, k, id));
    if (!d) throw new UsageError(`no dead-lettered entry ${id}`);
    console.log(JSON.stringify(d, null, 2));
  });
dlq
  .command('redrive')
  .argument('[ids...]')
  .option('--all', 'every entry (narrowed by --stage / --reason)')
  .option('--stage <name>')
  .option('--reason <code>')
  .description('put entries back on the stream their failed stage reads')
  .action(async (ids: string[], opts: { all?: boolean; stage?: string; reason?: string }) => {
    const wanted = await pick(ids, opts);
    const done = await withRedis((redis, k) => redrive(redis, k, wanted));
    for (const [id, stream, newId] of done) console.log(`${id} → ${stream} ${newId}`);
    console.log(`redriven: ${done.length}`);
    failOnMissing(wanted, new Set(done.map(([id]) => id)));
  });
dlq
  .command('purge')
  .argument('[ids...]')
  .option('--all', 'every entry (narrowed by --stage / --reason)')
  .option('--stage <name>')
  .option('--reason <code>')
  .description('delete entries from the dead-letter stream for good')
  .action(async (ids: string[], opts: { all?: boolean; stage?: string; reason?: string }) => {
    const wanted = await pick(ids, opts);
    const dropped = await withRedis((redis, k) => purge(redis, k, wanted));
    console.log(`purged: ${dropped.length}`);
    failOnMissing(wanted, new Set(dropped));
  });

/** Names the ids that were not in the DLQ: an operator's typo must not pass as success. */
function failOnMissing(wanted: string[], found: Set<string>): void {
  const missing = wanted.filter((id) => !found.has(id));
  if (missing.length > 0) throw new UsageError(`not in the dead-letter stream: ${missing.join(', ')}`);
}

async function pick(
  ids: string[],
  opts: { all?: boolean; stage?: string; reason?: string },
): Promise<string[]> {
  if (ids.length > 0 && opts.all) throw new UsageError('give ids or --all, not both');
  if (ids.length > 0) return ids;
  if (!opts.all) throw new UsageError('name the entries to act on, or --all');
  return withRedis(async (redis, k) => (await listDeadLetters(redis, k, opts)).map((d) => d.id));
}

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
    const current = await withRedis((redis, k) => readCurrent(redis, canonicalStore(k), root));
    if (!current) throw new UsageError(`no canonical graph emitted for root ${root} yet`);
    const { graph, emitted } = current;
    process.stdout.write(
      `${opts.json ? jsonView(graph, emitted.sequence_number) : textView(graph, emitted.sequence_number)}\n`,
    );
  });

const kafka = program.command('kafka').description('the Kafka output');
kafka
  .command('init')
  .description('create the output topic (KAFKA_TOPIC_CANONICAL) with the pipeline settings when missing')
  .action(async () => {
    console.log(await kafkaInit(loadConfig()));
  });

program
  .command('tail')
  .description('decode and print the output messages (Kafka, or the Redis stream sink without KAFKA_BROKER)')
  .option('--from-beginning', 'start at the oldest message still kept')
  .option('--root <id>', 'only this root')
  .option('--exit', 'stop after what is there now instead of following')
  .action(async (opts: { fromBeginning?: boolean; root?: string; exit?: boolean }) => {
    const root = opts.root === undefined ? undefined : normalizeHex(opts.root, 16);
    if (root === null) throw new UsageError(`not a space id: ${opts.root}`);
    await tail(loadConfig(), { ...opts, root });
  });

program
  .command('config')
  .description('every setting with its default and meaning (a Markdown table)')
  .action(() => console.log(settingsTable()));

program.parseAsync().catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`atlas: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`atlas: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
