/**
 * Test stages for the runtime: a relay that copies each input entry to its output, with knobs
 * to make it slow, throw on chosen entries, kill its own process on chosen entries, or run as a
 * singleton. Used in-process (via stageComponent) and in child processes (stage-runner.ts).
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Fields } from '../../pipeline/entry.ts';
import type { Stage, StageFactory } from '../../pipeline/stage.ts';

export interface RelayOptions {
  name?: string;
  input?: string;
  output?: string;
  /** Sleep this long at the start of each batch. */
  sleepMs?: number;
  /** Throw while handling an entry for which this returns true. */
  throwsOn?: (fields: Record<string, string>) => boolean;
  /** Kill the whole process (SIGKILL) when a batch holds an entry with field crash=1. */
  crashOnMarked?: boolean;
  singleton?: boolean;
  order?: Stage['order'];
  marker?: string[];
  /** Called with every batch (for tests that want to see what the stage saw). */
  onBatch?: (fields: Array<Record<string, string>>) => void;
}

/** The input's fields as the stage forwards them: resolved blobs by their own name, refs dropped. */
export function forwardable(fields: Map<string, Buffer>): Fields {
  const out: Fields = {};
  for (const [name, value] of fields) if (!name.endsWith('@blob')) out[name] = value;
  return out;
}

export function relayStage(opts: RelayOptions = {}): StageFactory {
  return (ctx) => ({
    name: opts.name ?? 'relay',
    input: opts.input ?? 'in',
    output: opts.output ?? 'out',
    ...(opts.singleton ? { singleton: true } : {}),
    ...(opts.order ? { order: opts.order } : {}),
    ...(opts.marker ? { marker: opts.marker } : {}),
    async handle(entries, step) {
      ctx.log.info({ count: entries.length, first: entries[0]?.id }, 'handling');
      opts.onBatch?.(entries.map((e) => e.toJSON()));
      if (opts.sleepMs) await delay(opts.sleepMs);
      for (const entry of entries) {
        if (opts.crashOnMarked && entry.optionalText('crash') === '1') {
          ctx.log.info({ id: entry.id }, 'crashing on purpose');
          process.kill(process.pid, 'SIGKILL');
          await delay(10_000);
        }
        if (opts.throwsOn?.(entry.toJSON())) throw new Error(`refusing entry ${entry.optionalText('n')}`);
        step.send(forwardable(entry.fields));
        step.ack(entry);
      }
    },
  });
}
