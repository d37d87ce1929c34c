#!/usr/bin/env node
/** The `atlas` command: run stages, inspect streams, work the dead-letter stream. */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { aclSetUser, type Role, roles } from '../../pipeline/acl.ts';
import { newToken } from '../../pipeline/auth.ts';
import {
  type Config,
  loadConfig,
  parseConfig,
  secretsOf,
  settingsTable,
  settingsValues,
} from '../../pipeline/config.ts';
import { listDeadLetters, purge, redrive, showDeadLetter } from '../../pipeline/dlq.ts';
import {
  describeHealth,
  describeStreams,
  printHealth,
  replay,
  replayRefusal,
} from '../../pipeline/inspect.ts';
import { keys } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { connectFailFast, whenReady } from '../../pipeline/redis.ts';
import { redactText, redactUrl } from '../../pipeline/secrets.ts';
import { packageVersion } from '../../pipeline/version.ts';
import { jsonView, textView } from '../../stages/canonical/show.ts';
import { canonicalStore, readCurrent } from '../../stages/canonical/store.ts';
import { stageNames } from '../../stages/index.ts';
import { normalizeHex } from '../../stages/topology/ids.ts';
import { CliError, UsageError } from './errors.ts';
import { kafkaInit, tail } from './output.ts';
import { runStages } from './process.ts';
import { describeRecovery, recover } from './recover.ts';
import { eventsCommand, schemasCommand } from './schemas.ts';

const program = new Command('atlas')
  .description('Atlas pipeline: space-topology events → canonical trust graphs → Kafka')
  .version(packageVersion())
  .showHelpAfterError();

/** A short-lived Redis session for the inspection commands. */
async function withRedis<T>(
  fn: (redis: ReturnType<typeof connectFailFast>, k: ReturnType<typeof keys>) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  // the CLI reports connection faults itself, once, in its error message
  const redis = connectFailFast(config, 'atlas-cli', createLogger('silent'));
  let refusal: Error | undefined;
  try {
    if (!(await whenReady(redis, 3000, true, (err) => (refusal = err))))
      throw new Error(refusal?.message ?? 'ECONNREFUSED');
    return await fn(redis, keys(config.ATLAS_PREFIX));
  } catch (err) {
    if (
      err instanceof Error &&
      (refusal || /ECONNREFUSED|Stream isn't writeable|Connection is closed|timed out/.test(err.message))
    ) {
      throw unreachable(config, err);
    }
    throw err;
  } finally {
    redis.disconnect();
  }
}

/** Says why Redis refused us (no listener, TLS trust, credentials) without quoting a secret. */
function unreachable(config: Config, err: Error): UsageError {
  const why = redactText(err.message, secretsOf(config));
  const hint = /ECONNREFUSED/.test(why) ? ' (start it with: ops/services up redis)' : '';
  return new UsageError(`cannot reach Redis at ${redactUrl(config.REDIS_URL)}: ${why}${hint}`);
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
  .description(
    "each stream: length, consumer groups, lag, pending, age of the oldest pending entry; the pipeline's health: every stage instance and what keeps it from being ready",
  )
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) => {
    const [views, health] = await withRedis(async (redis, k) => [
      await describeStreams(redis, k),
      await describeHealth(redis, k),
    ]);
    if (opts.json) return console.log(JSON.stringify({ streams: views, ...health }, null, 2));
    printHealth(health);
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
      const refused = await replayRefusal(redis, k.stream(s.input), opts.from);
      if (refused) throw new UsageError(refused);
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

program
  .command('recover')
  .description(
    'after lost state: continue every root after its last sequence number in the output, print the cursor to replay the source from, bring the pipeline back',
  )
  .option('--json', 'machine-readable output')
  .action(async (opts: { json?: boolean }) => {
    const config = loadConfig();
    const done = await withRedis((redis, k) => recover(config, redis, k));
    console.log(opts.json ? JSON.stringify(done, null, 2) : describeRecovery(done));
  });

program.addCommand(schemasCommand());
program.addCommand(eventsCommand(withRedis));

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

const token = program.command('token').description('bearer tokens of the HTTP door');
token
  .command('new')
  .description('print a fresh random token (once: only its hash is kept) and its ATLAS_AUTH_TOKENS entry')
  .argument('<name>', 'who uses it (letters, digits, _ . -); shown in logs and rate-limit answers')
  .option('--rate <n>', 'requests per second allowed with it (default: no limit)')
  .action((name: string, opts: { rate?: string }) => {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new UsageError(`not a token name: ${name}`);
    const rate = opts.rate === undefined ? undefined : Number(opts.rate);
    if (rate !== undefined && !(Number.isInteger(rate) && rate > 0))
      throw new UsageError(`--rate must be a positive whole number, got ${opts.rate}`);
    const made = newToken(name, rate);
    console.log(`token (shown once, keep it secret): ${made.token}`);
    console.log('add this entry to ATLAS_AUTH_TOKENS (comma-separated with the others):');
    console.log(`  ${made.entry}`);
    console.log(`call the door with: -H 'authorization: Bearer ${made.token}'`);
  });

program
  .command('acl')
  .description(
    'print ACL SETUSER commands for the Redis users of this prefix (door, stage, admin); pipe them to redis-cli',
  )
  .option('--door <file>', 'file holding the password of the door user (the HTTP ingest)')
  .option('--stage <file>', 'file holding the password of the stage user (stream workers)')
  .option('--admin <file>', 'file holding the password of the admin user (this CLI)')
  .action((opts: Partial<Record<Role, string>>) => {
    const given = roles.filter((role) => opts[role] !== undefined);
    if (given.length === 0)
      throw new UsageError('name at least one of --door, --stage, --admin with a password file');
    const prefix = loadConfig().ATLAS_PREFIX;
    for (const role of given) {
      // a file, not an argument: arguments are visible to every user of the machine (ps)
      const password = readFileSync(opts[role]!, 'utf8').trim();
      if (!password) throw new UsageError(`the password file of --${role} is empty`);
      console.log(aclSetUser(prefix, role, password).join(' '));
    }
  });

program
  .command('config')
  .description('every setting with its default and meaning (a Markdown table)')
  .option('--values', 'NAME=value as this process sees them (secrets masked)')
  .action((opts: { values?: boolean }) =>
    console.log(opts.values ? settingsValues(loadConfig()) : settingsTable()),
  );

program.parseAsync().catch((err: unknown) => {
  // a driver's message may quote what it was given (a URL, a password): mask before printing
  const secrets = secretsOf(parseConfigQuietly());
  if (err instanceof CliError) {
    process.stderr.write(`atlas: ${redactText(err.message, secrets)}\n`);
    process.exit(err.exitCode);
  }
  const text =
    err instanceof Error ? (isServerAnswer(err) ? err.message : (err.stack ?? err.message)) : String(err);
  process.stderr.write(`atlas: ${redactText(text, secrets)}\n`);
  process.exit(1);
});

/**
 * Redis's error replies (NOPERM, WRONGTYPE) and kafkajs's errors (authentication failed, broker
 * unreachable) say what went wrong; their stacks add nothing for an operator.
 */
function isServerAnswer(err: Error): boolean {
  return err.name === 'ReplyError' || err.name.startsWith('KafkaJS');
}

function parseConfigQuietly(): Config | undefined {
  try {
    return parseConfig(process.env);
  } catch {
    return undefined;
  }
}
