/**
 * What every `atlas` command shares: the global options (--prefix, --redis-url, --debug) and a
 * short-lived Redis session that turns a connection fault into one line naming the server.
 */
import type { Command } from 'commander';
import type { Redis } from 'ioredis';
import { type Config, loadConfig, secretsOf } from '../../pipeline/config.ts';
import { type Keys, keys } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { connectFailFast, whenReady } from '../../pipeline/redis.ts';
import { redactText, redactUrl } from '../../pipeline/secrets.ts';
import { CliError, UsageError } from './errors.ts';

export interface GlobalOptions {
  prefix?: string;
  redisUrl?: string;
  debug?: boolean;
}

/**
 * The global options win over the environment: they are written into it before any command
 * reads its settings, so every code path (loadConfig, the stages) sees one configuration.
 */
export function applyGlobals(opts: GlobalOptions): void {
  if (opts.prefix !== undefined) process.env.ATLAS_PREFIX = opts.prefix;
  if (opts.redisUrl !== undefined) process.env.REDIS_URL = opts.redisUrl;
}

export function addGlobalOptions(program: Command): Command {
  return program
    .option('--prefix <prefix>', 'the pipeline to work on (overrides ATLAS_PREFIX)')
    .option('--redis-url <url>', 'the Redis to connect to (overrides REDIS_URL)')
    .option('--debug', 'print stack traces of failures')
    .hook('preAction', (cmd) => applyGlobals(cmd.opts<GlobalOptions>()));
}

/** A short-lived Redis session for the inspection commands. */
export async function withRedis<T>(fn: (redis: Redis, k: Keys, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig();
  // the CLI reports connection faults itself, once, in its error message
  const redis = connectFailFast(config, 'atlas-cli', createLogger('silent'));
  let refusal: Error | undefined;
  try {
    if (!(await whenReady(redis, 3000, true, (err) => (refusal = err))))
      throw new Error(refusal?.message ?? 'ECONNREFUSED');
    return await fn(redis, keys(config.ATLAS_PREFIX), config);
  } catch (err) {
    if (
      !(err instanceof CliError) &&
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
function unreachable(config: Config, err: Error): CliError {
  const why = redactText(err.message, secretsOf(config));
  const hint = /ECONNREFUSED/.test(why) ? ' (start it with: ops/services up redis)' : '';
  return new CliError(`cannot reach Redis at ${redactUrl(config.REDIS_URL)}: ${why}${hint}`);
}

/** A stream entry id (ms-seq, or ms alone), checked before it reaches Redis. */
export function checkIds(ids: string[], what = 'dead-letter id'): string[] {
  const bad = ids.filter((id) => !/^\d{1,20}(-\d{1,20})?$/.test(id));
  if (bad.length > 0)
    throw new UsageError(`not a ${what}: ${bad.join(', ')} (expected a stream id such as 1712345678901-0)`);
  return ids;
}

/** A positive whole number option (commander's parser): `-n abc` is a usage error, not NaN. */
export function positiveInt(name: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value) || Number(value) < 1)
      throw new UsageError(`${name} must be a positive whole number, got ${value}`);
    return Number(value);
  };
}

/** One of a fixed set, or a usage error listing the set. */
export function oneOf(name: string, value: string | undefined, valid: readonly string[]): void {
  if (value !== undefined && !valid.includes(value))
    throw new UsageError(`unknown ${name} ${value}; valid: ${valid.join(', ')}`);
}
