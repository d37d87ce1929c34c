/**
 * Loads the Lua scripts of pipeline/scripts (one job each) and registers them on a client as
 * ioredis commands; `--@include file` lines pull in shared fragments.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { StateLostError } from './generation.ts';
import { FencedError } from './stage.ts';

const dir = join(import.meta.dirname, 'scripts');

function source(file: string): string {
  return readFileSync(join(dir, file), 'utf8').replace(/^--@include (\S+)$/gm, (_, inc: string) =>
    source(inc),
  );
}

/** Script name → number of KEYS it takes (-1: the first argument says how many). */
const scripts = {
  commit: -1,
  'append-idempotent': 4,
  'trim-acknowledged': 2,
  'dlq-redrive': 4,
  'dlq-drop': 3,
  'dlq-trim': 3,
  'dlq-recount': 2,
  'forget-consumer': 1,
  'generation-join': 2,
  'fenced-append': 2,
  'lease-acquire': 2,
  'lease-renew': 1,
  'lease-release': 1,
} as const;

export type ScriptName = keyof typeof scripts;
type Arg = string | number | Buffer;

const registered = new WeakSet<Redis>();

/** Runs a named script; keys and args are passed as given. A fence refusal is a FencedError. */
export async function runScript(
  redis: Redis,
  name: ScriptName,
  keys: string[],
  args: Arg[],
): Promise<unknown> {
  if (!registered.has(redis)) {
    for (const [script, numberOfKeys] of Object.entries(scripts)) {
      const lua = source(`${script}.lua`);
      redis.defineCommand(script, numberOfKeys < 0 ? { lua } : { lua, numberOfKeys });
    }
    registered.add(redis);
  }
  const command = (redis as unknown as Record<string, (...a: (Arg | Arg[])[]) => Promise<unknown>>)[name]!;
  const numberOfKeys = scripts[name];
  // One array, which ioredis flattens: spread as call arguments, a commit writing a whole graph
  // table (100K subtrees, 200K arguments) overflows the JS stack.
  const all = [...keys, ...args];
  const reply = numberOfKeys < 0 ? command.call(redis, keys.length, all) : command.call(redis, all);
  return reply.catch(typedRefusal);
}

/**
 * The scripts' refusals as typed errors: lib/fence.lua answers FENCED (the lease moved on), the
 * generation checks STATE_LOST (the pipeline's state in Redis is gone).
 */
function typedRefusal(err: unknown): never {
  if (!(err instanceof Error)) throw err;
  if (err.message.startsWith('FENCED')) throw new FencedError(err.message, { cause: err });
  if (err.message.startsWith('STATE_LOST')) throw new StateLostError(err.message);
  throw err;
}
