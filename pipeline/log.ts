/** JSON logs (pino); pretty-printed when a person is watching a terminal. */
import { type Logger, pino } from 'pino';
import type { Entry } from './entry.ts';
import { MASK, redactPaths } from './secrets.ts';

export type { Logger };

export function createLogger(level: string, name = 'atlas'): Logger {
  const pretty = process.stdout.isTTY && process.env.ATLAS_LOG_JSON !== '1';
  return pino({
    name,
    level,
    // a secret logged by mistake (a config object, client options) is masked, not printed
    redact: { paths: redactPaths, censor: MASK },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } } }
      : {}),
  });
}

/**
 * What identifies an entry in a log line: its stream id and, where it carries them, the
 * event's id and sequence number, the root and its update number, the trace and the door's
 * request — so a line can be followed to the event, its trace and the HTTP request.
 */
export function entryLog(entry: Entry): Record<string, string> {
  const out: Record<string, string> = { id: entry.id };
  for (const [field, key] of LOGGED_FIELDS) {
    const value = entry.fields.get(field);
    if (value !== undefined && out[key] === undefined) out[key] = value.toString('utf8');
  }
  const traceId = entry.fields.get('traceparent')?.toString('utf8').split('-')[1];
  if (traceId) out.trace_id = traceId;
  return out;
}

/** Entry field → log key; `seq` before `event_seq` (the event's sequence either way). */
const LOGGED_FIELDS: [string, string][] = [
  ['event_id', 'event_id'],
  ['seq', 'seq'],
  ['event_seq', 'seq'],
  ['root', 'root'],
  ['sequence_number', 'sequence_number'],
  ['request_id', 'request_id'],
  ['skip', 'skip'],
];
