/**
 * Setting the pipeline up: `token` (the HTTP door's bearer tokens), `acl` (Redis users) and
 * `config` (the settings in effect).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { aclSetUser, type Role, roles } from '../../pipeline/acl.ts';
import { newToken } from '../../pipeline/auth.ts';
import { loadConfig, settings, settingsTable, settingsValues, shownValue } from '../../pipeline/config.ts';
import { doorStreams } from '../../stages/streams.ts';
import { UsageError } from './errors.ts';
import { printJson, table } from './output.ts';

/** Each setting's value in effect (secrets masked) and whether the environment set it. */
export function effectiveSettings(): Array<{ name: string; value: string; from: 'env' | 'default' }> {
  const config = loadConfig();
  return Object.keys(settings).map((name) => ({
    name,
    value: shownValue(name, config[name as keyof typeof config]),
    // as parseConfig reads it: an empty variable counts as unset
    from: process.env[name] === undefined || process.env[name] === '' ? 'default' : 'env',
  }));
}

export function register(program: Command): void {
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
        console.log(aclSetUser(prefix, role, password, doorStreams).join(' '));
      }
    });

  program
    .command('config')
    .description(
      'the settings in effect: value (secrets masked) and whether it comes from the environment or the default; exits 2 naming each bad setting',
    )
    .option('--json', 'machine-readable output')
    .option('--values', 'NAME=value lines (for a shell or an env file)')
    .option('--defaults', 'every setting with its default and meaning (the Markdown table of the README)')
    .action((opts: { json?: boolean; values?: boolean; defaults?: boolean }) => {
      if (opts.defaults) return console.log(settingsTable());
      if (opts.values) return console.log(settingsValues(loadConfig()));
      const rows = effectiveSettings();
      if (opts.json) return printJson(rows);
      console.log(
        table(
          ['setting', 'value', 'from'],
          rows.map((r) => [r.name, r.value, r.from]),
        ),
      );
    });
}
