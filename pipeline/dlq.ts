/**
 * The dead-letter stream: list, show, redrive (back onto the failed stage's input), purge, and
 * its bounds (trim).
 */
import type { Redis } from 'ioredis';
import type { Config } from './config.ts';
import { type Entry, parseEntries } from './entry.ts';
import type { Keys } from './keys.ts';
import type { Logger } from './log.ts';
import { metrics } from './metrics.ts';
import { runScript } from './scripts.ts';

export interface DeadLetter {
  id: string;
  stage: string;
  reason: string;
  error: string;
  attempts: number;
  stream: string;
  entryId: string;
  failedAt: string;
  details?: unknown;
  original: Record<string, string>;
}

export interface DlqFilter {
  stage?: string | undefined;
  reason?: string | undefined;
  count?: number | undefined;
}

function toDeadLetter(entry: Entry): DeadLetter {
  const all = entry.toJSON();
  const original: Record<string, string> = {};
  for (const [k, v] of Object.entries(all)) if (k.startsWith('orig.')) original[k.slice(5)] = v;
  return {
    id: entry.id,
    stage: all.stage ?? '',
    reason: all.reason ?? '',
    error: all.error ?? '',
    attempts: Number(all.attempts ?? 0),
    stream: all.stream ?? '',
    entryId: all.entry_id ?? '',
    failedAt: all.failed_at ?? '',
    ...(all.details ? { details: JSON.parse(all.details) } : {}),
    original,
  };
}

export async function listDeadLetters(
  redis: Redis,
  keys: Keys,
  filter: DlqFilter = {},
): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  let from = '-';
  const want = filter.count ?? Number.POSITIVE_INFINITY;
  while (out.length < want) {
    const raw = (await redis.callBuffer('XRANGE', keys.dlq, from, '+', 'COUNT', 500)) as [Buffer, Buffer[]][];
    const entries = parseEntries(raw);
    if (entries.length === 0) break;
    for (const e of entries) {
      const d = toDeadLetter(e);
      if ((!filter.stage || d.stage === filter.stage) && (!filter.reason || d.reason === filter.reason))
        out.push(d);
      if (out.length >= want) break;
    }
    from = `(${entries[entries.length - 1]!.id}`;
  }
  return out;
}

export async function showDeadLetter(redis: Redis, keys: Keys, id: string): Promise<DeadLetter | undefined> {
  const raw = (await redis.callBuffer('XRANGE', keys.dlq, id, id)) as [Buffer, Buffer[]][];
  const [entry] = parseEntries(raw);
  return entry ? toDeadLetter(entry) : undefined;
}

/** Puts each entry back on the stream its stage reads; returns [dlqId, stream, newId] per entry redriven. */
export async function redrive(
  redis: Redis,
  keys: Keys,
  ids: string[],
): Promise<Array<[string, string, string]>> {
  const done: Array<[string, string, string]> = [];
  for (const id of ids) {
    const result = (await runScript(
      redis,
      'dlq-redrive',
      [keys.dlq, keys.blobRefs, keys.seq, keys.dlqCounts],
      [id, keys.blob(''), keys.stream('')],
    )) as [string, string] | null;
    if (result) done.push([id, result[0], result[1]]);
  }
  return done;
}

/** Deletes dead letters for good; returns the ids that were there. */
export async function purge(redis: Redis, keys: Keys, ids: string[]): Promise<string[]> {
  const dropped: string[] = [];
  for (const id of ids) {
    const gone = (await runScript(
      redis,
      'dlq-drop',
      [keys.dlq, keys.blobRefs, keys.dlqCounts],
      [keys.blob(''), id],
    )) as number;
    if (gone > 0) dropped.push(id);
  }
  return dropped;
}

/** Most dead letters one trim deletes, so a call stays short; the next housekeeping goes on. */
const TRIM_PER_CALL = 1000;

/**
 * Keeps the DLQ within ATLAS_DLQ_MAX_ENTRIES and ATLAS_DLQ_MAX_AGE_S (oldest first). What goes
 * is counted (atlas_dlq_trimmed_total) and logged: dead letters are never lost silently.
 */
export async function trimDeadLetters(
  redis: Redis,
  keys: Keys,
  config: Pick<Config, 'ATLAS_DLQ_MAX_ENTRIES' | 'ATLAS_DLQ_MAX_AGE_S'>,
  log: Logger,
): Promise<number> {
  const { ATLAS_DLQ_MAX_ENTRIES: maxEntries, ATLAS_DLQ_MAX_AGE_S: maxAgeS } = config;
  if (maxEntries === 0 && maxAgeS === 0) return 0;
  const trimmed = (await runScript(
    redis,
    'dlq-trim',
    [keys.dlq, keys.blobRefs, keys.dlqCounts],
    [keys.blob(''), maxEntries, maxAgeS * 1000, TRIM_PER_CALL],
  )) as number;
  if (trimmed > 0) {
    metrics.dlqTrimmed.inc(trimmed);
    log.warn({ trimmed, maxEntries, maxAgeS }, 'dead letters deleted to keep the DLQ within its bounds');
  }
  return trimmed;
}
