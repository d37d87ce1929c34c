#!/usr/bin/env node
/**
 * The `atlas` command. Each topic's commands live in a file of their own that exports
 * `register(program)`; this file holds the global options and the one place failures become a
 * one-line message and an exit code (ops/cli/errors.ts, docs/OPERATIONS.md).
 */
import { Command, CommanderError } from 'commander';
import { type Config, parseConfig, secretsOf } from '../../pipeline/config.ts';
import { redactText } from '../../pipeline/secrets.ts';
import { packageVersion } from '../../pipeline/version.ts';
import { register as admin } from './admin.ts';
import { registerControl as control } from './control.ts';
import { register as dlq } from './dlq.ts';
import { CliError, exitCodes } from './errors.ts';
import { register as kafka } from './kafka.ts';
import { register as run } from './run.ts';
import { register as schemas } from './schemas.ts';
import { addGlobalOptions } from './session.ts';
import { register as streams } from './streams.ts';

const program = new Command('atlas')
  .description('Atlas pipeline: space-topology events → canonical trust graphs → Kafka')
  .version(packageVersion())
  .showHelpAfterError()
  // commander's own usage errors (unknown option, missing argument) are thrown to main() below,
  // which gives them exit code 2 like ours; subcommands inherit this
  .exitOverride();
addGlobalOptions(program);

for (const register of [run, streams, control, dlq, schemas, kafka, admin]) register(program);

async function main(): Promise<void> {
  try {
    await program.parseAsync();
  } catch (err) {
    fail(err);
  }
}

function fail(err: unknown): never {
  if (err instanceof CommanderError) {
    // commander printed its message already; --help and --version end here too, with 0
    process.exit(err.exitCode === 0 ? exitCodes.ok : exitCodes.usage);
  }
  // a driver's message may quote what it was given (a URL, a password): mask before printing
  const secrets = secretsOf(parseConfigQuietly());
  const debug = program.opts<{ debug?: boolean }>().debug === true;
  const text = err instanceof Error ? (debug ? (err.stack ?? err.message) : oneLine(err)) : String(err);
  process.stderr.write(`atlas: ${redactText(text, secrets)}\n`);
  process.exit(err instanceof CliError ? err.exitCode : exitCodes.failed);
}

/** The message alone: Redis's and kafkajs's errors say what went wrong, their stacks add nothing. */
function oneLine(err: Error): string {
  const hint = err instanceof CliError ? '' : ' (--debug for details)';
  return `${err.message}${hint}`;
}

function parseConfigQuietly(): Config | undefined {
  try {
    return parseConfig(process.env);
  } catch {
    return undefined;
  }
}

await main();
