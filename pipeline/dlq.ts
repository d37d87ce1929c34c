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

/** What earlier redrives of an entry left on it (dlq-redrive.lua): a loop shows here. */
export interface RedriveHistory {
  /** How many times it was redriven before this failure. */
  count: number;
  /** Its earlier DLQ ids, oldest first. */
  previous: string[];
  firstReason: string;
  firstError: string;
  firstFailedAt: string;
}

export interface DeadLetter {
  id: string;
  stage: string;
  reason: string;
  error: string;
  attempts: number;
  stream: string;
  entryId: string;
  /** The failed entry's event_id, when it has one. */
  eventId: string | null;
  failedAt: string;
  details?: unknown;
  original: Record<string, string>;
  history: RedriveHistory | null;
}

export interface DlqFilter {
  stage?: string | undefined;
  reason?: string | undefined;
  count?: number | undefined;
  /** Only dead letters up to this id: a bulk action retried acts on the same set, not on newer ones. */
  upTo?: string | undefined;
}

const HISTORY = 'redrive.';

function historyOf(original: Record<string, string>): RedriveHistory | null {
  if (original[`${HISTORY}count`] === undefined) return null;
  const previous = original[`${HISTORY}previous`] ?? '';
  return {
    count: Number(original[`${HISTORY}count`]),
    previous: previous === '' ? [] : previous.split(','),
    firstReason: original[`${HISTORY}first_reason`] ?? '',
    firstError: original[`${HISTORY}first_error`] ?? '',
    firstFailedAt: original[`${HISTORY}first_failed_at`] ?? '',
  };
}

function toDeadLetter(entry: Entry): DeadLetter {
  const all = entry.toJSON();
  const original: Record<string, string> = {};
  for (const [k, v] of Object.entries(all)) if (k.startsWith('orig.')) original[k.slice(5)] = v;
  const history = historyOf(original);
  for (const k of Object.keys(original)) if (k.startsWith(HISTORY)) delete original[k];
  return {
    id: entry.id,
    stage: all.stage ?? '',
    reason: all.reason ?? '',
    error: all.error ?? '',
    attempts: Number(all.attempts ?? 0),
    stream: all.stream ?? '',
    entryId: all.entry_id ?? '',
    eventId: original.event_id ?? null,
    failedAt: all.failed_at ?? '',
    ...(all.details ? { details: JSON.parse(all.details) } : {}),
    original,
    history,
  };
}

function matches(d: DeadLetter, filter: DlqFilter): boolean {
  return (!filter.stage || d.stage === filter.stage) && (!filter.reason || d.reason === filter.reason);
}

/** One page of matching dead letters, oldest first, and how many match in all. */
export async function pageDeadLetters(
  redis: Redis,
  keys: Keys,
  filter: DlqFilter = {},
): Promise<{ entries: DeadLetter[]; total: number }> {
  const entries: DeadLetter[] = [];
  const want = filter.count ?? Number.POSITIVE_INFINITY;
  let total = 0;
  let from = '-';
  const to = filter.upTo ?? '+';
  // The whole DLQ is read to count the matches: ATLAS_DLQ_MAX_ENTRIES bounds it.
  for (;;) {
    const raw = (await redis.callBuffer('XRANGE', keys.dlq, from, to, 'COUNT', 500)) as [Buffer, Buffer[]][];
    const page = parseEntries(raw);
    if (page.length === 0) break;
    for (const e of page) {
      const d = toDeadLetter(e);
      if (!matches(d, filter)) continue;
      total++;
      if (entries.length < want) entries.push(d);
    }
    from = `(${page[page.length - 1]!.id}`;
  }
  return { entries, total };
}

export async function listDeadLetters(
  redis: Redis,
  keys: Keys,
  filter: DlqFilter = {},
): Promise<DeadLetter[]> {
  return (await pageDeadLetters(redis, keys, filter)).entries;
}

export async function showDeadLetter(redis: Redis, keys: Keys, id: string): Promise<DeadLetter | undefined> {
  const raw = (await redis.callBuffer('XRANGE', keys.dlq, id, id)) as [Buffer, Buffer[]][];
  const [entry] = parseEntries(raw);
  return entry ? toDeadLetter(entry) : undefined;
}

/** The newest id in the DLQ ('0-0' when empty): the fixed end of a bulk action's set. */
export async function newestDeadLetter(redis: Redis, keys: Keys): Promise<string> {
  const [newest] = await redis.xrevrange(keys.dlq, '+', '-', 'COUNT', 1);
  return newest?.[0] ?? '0-0';
}

/** Dead letters by stage and reason (the counts hash, rebuilt when it disagrees with the DLQ). */
export async function deadLetterStats(
  redis: Redis,
  keys: Keys,
): Promise<{ total: number; counts: Array<{ stage: string; reason: string; count: number }> }> {
  let [counts, total] = await Promise.all([redis.hgetall(keys.dlqCounts), redis.xlen(keys.dlq)]);
  const sum = Object.values(counts).reduce((n, c) => n + Number(c), 0);
  if (sum !== total) {
    await runScript(redis, 'dlq-recount', [keys.dlq, keys.dlqCounts], []);
    [counts, total] = await Promise.all([redis.hgetall(keys.dlqCounts), redis.xlen(keys.dlq)]);
  }
  const rows = Object.entries(counts).map(([field, count]) => {
    const cut = field.indexOf('|');
    return { stage: field.slice(0, cut), reason: field.slice(cut + 1), count: Number(count) };
  });
  rows.sort((a, b) => a.stage.localeCompare(b.stage) || a.reason.localeCompare(b.reason));
  return { total, counts: rows };
}

/** Called after each entry of a bulk action: how many are done of how many. */
export type Progress = (done: number, total: number) => void;

/** Puts each entry back on the stream its stage reads; returns [dlqId, stream, newId] per entry redriven. */
export async function redrive(
  redis: Redis,
  keys: Keys,
  ids: string[],
  onProgress: Progress = () => {},
): Promise<Array<[string, string, string]>> {
  const done: Array<[string, string, string]> = [];
  for (const [i, id] of ids.entries()) {
    const result = (await runScript(
      redis,
      'dlq-redrive',
      [keys.dlq, keys.blobRefs, keys.seq, keys.dlqCounts],
      [id, keys.blob(''), keys.stream('')],
    )) as [string, string] | null;
    if (result) done.push([id, result[0], result[1]]);
    onProgress(i + 1, ids.length);
  }
  return done;
}

/** Deletes dead letters for good; returns the ids that were there. */
export async function purge(
  redis: Redis,
  keys: Keys,
  ids: string[],
  onProgress: Progress = () => {},
): Promise<string[]> {
  const dropped: string[] = [];
  for (const [i, id] of ids.entries()) {
    const gone = (await runScript(
      redis,
      'dlq-drop',
      [keys.dlq, keys.blobRefs, keys.dlqCounts],
      [keys.blob(''), id],
    )) as number;
    if (gone > 0) dropped.push(id);
    onProgress(i + 1, ids.length);
  }
  return dropped;
}

/**
 * Redrives or purges every dead letter matching `filter` up to `filter.upTo` (required: fix it
 * once, e.g. in a job's data, with newestDeadLetter). Each entry goes in its own atomic script
 * and leaves the DLQ as it is acted on, so a retry after a crash acts on what is left of the same
 * set: never twice on one entry, and never on dead letters that arrived (or failed again) since.
 */
export async function actOnMatching(
  redis: Redis,
  keys: Keys,
  action: 'redrive' | 'purge',
  filter: DlqFilter & { upTo: string },
  onProgress: Progress = () => {},
): Promise<{ matched: number; done: number }> {
  const { entries } = await pageDeadLetters(redis, keys, { ...filter, count: undefined });
  const ids = entries.map((d) => d.id);
  const done =
    action === 'redrive'
      ? (await redrive(redis, keys, ids, onProgress)).length
      : (await purge(redis, keys, ids, onProgress)).length;
  return { matched: ids.length, done };
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
