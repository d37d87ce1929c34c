/**
 * `atlas schemas`: the event families, their event types and versions, and where each goes;
 * `atlas events query`: the stored `local` events of one type.
 */
import { Command } from 'commander';
import { z } from 'zod';
import { currentVersion } from '../../stages/families/family.ts';
import { NotLocalError, queryLocal } from '../../stages/families/local.ts';
import { families } from '../../stages/families/registry.ts';
import { NotFoundError, UsageError } from './errors.ts';
import { withRedis } from './session.ts';

export interface SchemaView {
  family: string;
  route: string;
  event_type: string;
  versions: number[];
  current: number;
  topic: string;
  key: string;
  priority: string;
  ttl_ms: number;
  propagation: string;
  /** JSON Schema of the current version's payload. */
  payload?: unknown;
}

export function schemaViews(withPayload = false): SchemaView[] {
  return families.flatMap((family) =>
    Object.entries(family.types).map(([eventType, spec]) => ({
      family: family.name,
      route: family.route,
      event_type: eventType,
      versions: Object.keys(spec.versions).map(Number),
      current: currentVersion(spec),
      topic: spec.topic,
      key: spec.key,
      priority: spec.priority,
      ttl_ms: spec.ttlMs,
      propagation: spec.propagation,
      ...(withPayload
        ? {
            payload: z.toJSONSchema(spec.versions[currentVersion(spec)]!, {
              io: 'input',
              unrepresentable: 'any',
            }),
          }
        : {}),
    })),
  );
}

function schemasCommand(): Command {
  return new Command('schemas')
    .description(
      'the registered event families: event types, versions, topic, key, priority, TTL, propagation',
    )
    .option('--family <name>', 'only this family')
    .option('--json', 'machine-readable, with the JSON Schema of each current payload')
    .action((opts: { family?: string; json?: boolean }) => {
      if (opts.family && !families.some((f) => f.name === opts.family)) {
        throw new NotFoundError(
          `no family ${opts.family} (families: ${families.map((f) => f.name).join(', ')})`,
        );
      }
      const views = schemaViews(opts.json).filter((v) => !opts.family || v.family === opts.family);
      if (opts.json) return console.log(JSON.stringify(views, null, 2));
      for (const v of views) {
        const ttl = v.ttl_ms > 0 ? `${v.ttl_ms / 1000}s` : 'none';
        console.log(
          `${v.family.padEnd(9)} ${v.event_type.padEnd(32)} v${v.versions.join(',v')} (current v${v.current})  ${v.propagation.padEnd(7)} ${v.priority.padEnd(8)} ttl ${ttl.padEnd(6)} → ${v.topic} key ${v.key}`,
        );
      }
    });
}

/** `atlas schemas` and `atlas events query`. */
export function register(program: Command): void {
  program.addCommand(schemasCommand());
  program.addCommand(eventsCommand());
}

function eventsCommand(): Command {
  const events = new Command('events').description('stored local events');
  events
    .command('query')
    .description('the stored local events of one type, oldest first, within their TTL')
    .requiredOption('--type <event_type>', 'a local event type (see `atlas schemas`)')
    .option('--since <ms>', 'stored at or after (ms since epoch)', '0')
    .option('--limit <n>', 'at most this many', '1000')
    .action(async (opts: { type: string; since: string; limit: string }) => {
      const since = Number(opts.since);
      const limit = Number(opts.limit);
      if (!Number.isSafeInteger(since) || since < 0) throw new UsageError('--since: ms since epoch');
      if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError('--limit: a positive integer');
      const found = await withRedis((redis, k) =>
        queryLocal(redis, k, opts.type, since, limit).catch((err: unknown) => {
          throw err instanceof NotLocalError ? new UsageError(err.message) : err;
        }),
      );
      for (const e of found) console.log(JSON.stringify(e));
    });
  return events;
}
