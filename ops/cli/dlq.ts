/**
 * `atlas dlq …`: the dead-letter stream. Every argument is checked before Redis is touched;
 * bulk actions (--all) say what they would do and need --yes; redrive keeps the history.
 */
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import {
  actOnMatching,
  type DeadLetter,
  type DlqFilter,
  deadLetterStats,
  newestDeadLetter,
  pageDeadLetters,
  purge,
  redrive,
  showDeadLetter,
} from '../../pipeline/dlq.ts';
import { deadLetterReasons, deadLetterStages } from '../../stages/names.ts';
import { NotFoundError, RefusedError, UsageError } from './errors.ts';
import { colourWanted, printJson, table } from './output.ts';
import { checkIds, oneOf, positiveInt, withRedis } from './session.ts';

interface FilterOptions {
  stage?: string;
  reason?: string;
}

interface BulkOptions extends FilterOptions {
  all?: boolean;
  yes?: boolean;
  dryRun?: boolean;
}

function checkFilter(opts: FilterOptions): void {
  oneOf('stage', opts.stage, deadLetterStages);
  oneOf('reason', opts.reason, deadLetterReasons);
}

function describeFilter(opts: FilterOptions): string {
  const parts = [opts.stage && `stage=${opts.stage}`, opts.reason && `reason=${opts.reason}`].filter(Boolean);
  return parts.length > 0 ? ` (${parts.join(', ')})` : '';
}

function short(text: string, max = 60): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function listTable(items: DeadLetter[]): string {
  return table(
    ['id', 'stage', 'reason', 'event_id', 'attempts', 'redrives', 'failed_at', 'error'],
    items.map((d) => [
      d.id,
      d.stage,
      d.reason,
      d.eventId ?? '-',
      d.attempts,
      d.history?.count ?? 0,
      d.failedAt,
      short(d.error),
    ]),
  );
}

export function register(program: Command): void {
  const dlq = program.command('dlq').description('the dead-letter stream');
  dlq
    .command('list')
    .description('dead-lettered entries, oldest first ("N of M shown" when cut)')
    .option('--stage <name>', `only this stage (${deadLetterStages.join(', ')})`)
    .option('--reason <code>', `only this reason (${deadLetterReasons.join(', ')})`)
    .option('-n, --count <n>', 'at most this many', positiveInt('-n/--count'), 100)
    .option('--json', 'machine-readable output: {total, shown, entries}')
    .action(async (opts: FilterOptions & { count: number; json?: boolean }) => {
      checkFilter(opts);
      const { entries, total } = await withRedis((redis, k) => pageDeadLetters(redis, k, opts));
      if (opts.json) return printJson({ total, shown: entries.length, entries });
      if (total === 0)
        return console.log(
          describeFilter(opts) ? `no dead letters${describeFilter(opts)}` : 'the dead-letter stream is empty',
        );
      console.log(listTable(entries));
      console.log(`${entries.length} of ${total} shown${describeFilter(opts)}`);
    });

  dlq
    .command('show')
    .argument('<id>')
    .option('--json', 'machine-readable output (the default: it is one entry in full)')
    .description('one dead-lettered entry in full, with its redrive history')
    .action(async (id: string) => {
      checkIds([id]);
      const d = await withRedis((redis, k) => showDeadLetter(redis, k, id));
      if (!d) throw new NotFoundError(`no dead-lettered entry ${id}`);
      printJson(d);
    });

  dlq
    .command('stats')
    .description('how many dead letters, by stage and reason')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const stats = await withRedis((redis, k) => deadLetterStats(redis, k));
      if (opts.json) return printJson(stats);
      if (stats.total === 0) return console.log('the dead-letter stream is empty');
      console.log(
        table(
          ['stage', 'reason', 'count'],
          stats.counts.map((c) => [c.stage, c.reason, c.count]),
        ),
      );
      console.log(`total: ${stats.total}`);
    });

  bulkCommand(dlq, 'redrive', 'put entries back on the stream their failed stage reads (history kept)');
  bulkCommand(dlq, 'purge', 'delete entries from the dead-letter stream for good');
}

function bulkCommand(dlq: Command, action: 'redrive' | 'purge', description: string): void {
  dlq
    .command(action)
    .argument('[ids...]')
    .option('--all', 'every entry (narrowed by --stage / --reason); needs --yes')
    .option('--stage <name>', `with --all: only this stage (${deadLetterStages.join(', ')})`)
    .option('--reason <code>', `with --all: only this reason (${deadLetterReasons.join(', ')})`)
    .option('--yes', 'do it (required with --all)')
    .option('--dry-run', 'list what would be done, change nothing')
    .description(description)
    .action(async (ids: string[], opts: BulkOptions) => {
      checkFilter(opts);
      if (ids.length > 0 && opts.all) throw new UsageError('give ids or --all, not both');
      if (ids.length === 0 && !opts.all) throw new UsageError('name the entries to act on, or --all');
      if (ids.length > 0 && (opts.stage || opts.reason))
        throw new UsageError('--stage and --reason narrow --all; not with ids');
      if (ids.length > 0) await byIds(action, checkIds(ids), opts);
      else await all(action, opts);
    });
}

async function byIds(action: 'redrive' | 'purge', ids: string[], opts: BulkOptions): Promise<void> {
  await withRedis(async (redis, k) => {
    if (opts.dryRun) {
      const found = (await Promise.all(ids.map((id) => showDeadLetter(redis, k, id)))).flatMap((d) =>
        d ? [d] : [],
      );
      console.log(listTable(found));
      console.log(`dry run: would ${action} ${found.length} of ${ids.length} named`);
      return failOnMissing(ids, new Set(found.map((d) => d.id)));
    }
    if (action === 'redrive') {
      const done = await redrive(redis, k, ids);
      for (const [id, stream, newId] of done) console.log(`${id} → ${stream} ${newId}`);
      console.log(`redriven: ${done.length}`);
      return failOnMissing(ids, new Set(done.map(([id]) => id)));
    }
    const dropped = await purge(redis, k, ids);
    console.log(`purged: ${dropped.length}`);
    failOnMissing(ids, new Set(dropped));
  });
}

async function all(action: 'redrive' | 'purge', opts: BulkOptions): Promise<void> {
  const filter: DlqFilter = { stage: opts.stage, reason: opts.reason };
  await withRedis(async (redis, k) => {
    const upTo = await newestDeadLetter(redis, k);
    const { entries, total } = await pageDeadLetters(redis, k, { ...filter, upTo });
    const what = `${action} ${total} dead letter${total === 1 ? '' : 's'}${describeFilter(opts)}`;
    if (opts.dryRun) {
      if (total > 0) console.log(listTable(entries));
      return console.log(`dry run: would ${what}`);
    }
    if (!opts.yes)
      throw new RefusedError(`--all would ${what}; add --yes to do it (or --dry-run to list them)`);
    const bar = progressBar(action, total);
    const { done } = await actOnMatching(redis, k, action, { ...filter, upTo }, (n) => bar?.update(n));
    bar?.stop();
    console.log(`${action === 'redrive' ? 'redriven' : 'purged'}: ${done}`);
  });
}

/** A progress bar on stderr, on a terminal only: a pipe or a log gets the final count alone. */
function progressBar(action: string, total: number): SingleBar | undefined {
  if (!colourWanted(process.stderr) || total < 2) return undefined;
  const bar = new SingleBar(
    { format: `${action} [{bar}] {value}/{total}`, stream: process.stderr, clearOnComplete: true },
    Presets.shades_classic,
  );
  bar.start(total, 0);
  return bar;
}

/** Names the ids that were not in the DLQ: an operator's typo must not pass as success. */
function failOnMissing(wanted: string[], found: Set<string>): void {
  const missing = wanted.filter((id) => !found.has(id));
  if (missing.length > 0) throw new NotFoundError(`not in the dead-letter stream: ${missing.join(', ')}`);
}
