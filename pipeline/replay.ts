/**
 * Replay: a stage's group reads again part of what it has already read. Only backwards (forward
 * would skip entries never processed), only within what the stream still retains, and never
 * silently: a target outside that range is refused with the range it must be in. A plan is made
 * (and shown as a preview) before anything moves; executing re-plans, since the group has moved.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';
import { compareStreamIds } from './retention.ts';

export type ReplayTarget =
  | { kind: 'earliest' }
  | { kind: 'from'; at: string }
  | { kind: 'datetime'; at: string }
  | { kind: 'shift'; by: number };

/** The target is malformed (not an id, seq, date or whole number). */
export class ReplayUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplayUsageError';
  }
}

/** The target is well formed but outside what can be replayed (trimmed, unread, forward). */
export class ReplayRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplayRefusedError';
  }
}

export interface ReplayPlan {
  stream: string;
  group: string;
  /** The first entry read again, and the last (the group's last delivered entry). */
  firstId: string;
  lastId: string;
  /** Entries read again. */
  count: number;
  /** Where the group is set: the entry before `firstId` ('0' when that is the oldest retained). */
  setId: string;
  /** The group's entries-read after the move (keeps its lag known), or null when Redis did not know it. */
  entriesRead: number | null;
  /** The oldest entry the stream retains. */
  oldestId: string;
}

interface GroupState {
  lastDelivered: string;
  entriesRead: number | null;
}

type RawEntry = [string, string[]];

export async function planReplay(
  redis: Redis,
  stream: string,
  group: string,
  target: ReplayTarget,
): Promise<ReplayPlan> {
  const state = await groupState(redis, stream, group);
  const [oldest] = (await redis.xrange(stream, '-', '+', 'COUNT', 1)) as RawEntry[];
  if (!oldest) throw new ReplayRefusedError(`${stream} retains no entries: nothing to replay`);
  if (state.lastDelivered === '0-0' || compareStreamIds(state.lastDelivered, oldest[0]) < 0)
    throw new ReplayRefusedError(
      `group ${group} has read nothing ${stream} still retains (last delivered ${state.lastDelivered}): nothing to replay`,
    );
  const range = `retained ${oldest[0]} … last delivered ${state.lastDelivered}`;
  const firstId = await firstOf(redis, stream, state.lastDelivered, oldest[0], target, range);
  if (compareStreamIds(firstId, state.lastDelivered) > 0)
    throw new ReplayRefusedError(
      `${describeTarget(target)} is after what group ${group} has read (${range}): a replay only goes back, it never skips entries`,
    );
  const count = await countBetween(redis, stream, firstId, state.lastDelivered);
  const [before] = (await redis.xrevrange(stream, `(${firstId}`, '-', 'COUNT', 1)) as RawEntry[];
  return {
    stream,
    group,
    firstId,
    lastId: state.lastDelivered,
    count,
    setId: before?.[0] ?? '0',
    entriesRead: state.entriesRead === null ? null : Math.max(0, state.entriesRead - count),
    oldestId: oldest[0],
  };
}

/** Moves the group back as planned: its consumers read `firstId`… again with their next read. */
export async function executeReplay(redis: Redis, plan: ReplayPlan): Promise<void> {
  const extra = plan.entriesRead === null ? [] : ['ENTRIESREAD', plan.entriesRead];
  await redis.call('XGROUP', 'SETID', plan.stream, plan.group, plan.setId, ...extra);
}

export function describePlan(plan: ReplayPlan): string {
  return `group ${plan.group} on ${plan.stream}: re-reads ${plan.count} entries, ${plan.firstId} … ${plan.lastId}`;
}

export function describeTarget(target: ReplayTarget): string {
  switch (target.kind) {
    case 'earliest':
      return '--to-earliest';
    case 'from':
      return `--from ${target.at}`;
    case 'datetime':
      return `--to-datetime ${target.at}`;
    case 'shift':
      return `--shift-by ${target.by}`;
  }
}

/**
 * Dead letters of `stage` whose source entries a replay reads again: remembered so that the
 * stage, failing them again, does not dead-letter them twice (the worker skips those ids).
 */
export function replayedDeadKey(keys: Keys, stage: string): string {
  return keys.of('replayed-dead', stage);
}

/** How long a replay's dead-letter ids are remembered: long past any replay's end. */
export const REPLAYED_DEAD_TTL_S = 24 * 3600;

async function groupState(redis: Redis, stream: string, group: string): Promise<GroupState> {
  let raw: unknown[];
  try {
    raw = (await redis.xinfo('GROUPS', stream)) as unknown[];
  } catch (err) {
    if (err instanceof Error && /no such key/i.test(err.message))
      throw new ReplayRefusedError(`${stream} does not exist yet: nothing to replay`);
    throw err;
  }
  for (const g of raw) {
    const flat = g as unknown[];
    const get = (k: string): unknown => flat[flat.indexOf(k) + 1];
    if (String(get('name')) !== group) continue;
    const read = get('entries-read');
    return {
      lastDelivered: String(get('last-delivered-id')),
      entriesRead: read === null || read === undefined ? null : Number(read),
    };
  }
  throw new ReplayRefusedError(
    `${stream} has no group ${group} yet (the stage never ran): nothing to replay`,
  );
}

async function firstOf(
  redis: Redis,
  stream: string,
  lastDelivered: string,
  oldestId: string,
  target: ReplayTarget,
  range: string,
): Promise<string> {
  switch (target.kind) {
    case 'earliest':
      return oldestId;
    case 'from':
      return /^\d+-\d+$/.test(target.at)
        ? atOrAfter(redis, stream, target.at, oldestId, `--from ${target.at}`, range)
        : bySeq(redis, stream, target.at, lastDelivered, range);
    case 'datetime': {
      const ms = Date.parse(target.at);
      if (!/^\d{4}-\d{2}-\d{2}T/.test(target.at) || Number.isNaN(ms))
        throw new ReplayUsageError(
          `--to-datetime ${target.at} is not an ISO date-time (e.g. 2026-11-30T01:00:00Z)`,
        );
      return atOrAfter(redis, stream, `${ms}-0`, oldestId, `--to-datetime ${target.at}`, range);
    }
    case 'shift':
      return shiftedBack(redis, stream, lastDelivered, target.by, range);
  }
}

/** The first retained entry at or after `id`; an id before the oldest retained one is refused. */
async function atOrAfter(
  redis: Redis,
  stream: string,
  id: string,
  oldestId: string,
  what: string,
  range: string,
): Promise<string> {
  if (compareStreamIds(id, oldestId) < 0)
    throw new ReplayRefusedError(
      `${what} is before the oldest entry ${stream} retains (${range}): older entries were trimmed; use --to-earliest to replay all that is retained`,
    );
  const [found] = (await redis.xrange(stream, id, '+', 'COUNT', 1)) as RawEntry[];
  if (!found) throw new ReplayRefusedError(`${what} is past the newest entry of ${stream} (${range})`);
  return found[0];
}

/** The entry whose `seq` field is `seq` (the pipeline's global sequence), searched in what was read. */
async function bySeq(
  redis: Redis,
  stream: string,
  raw: string,
  lastDelivered: string,
  range: string,
): Promise<string> {
  if (!/^\d+$/.test(raw))
    throw new ReplayUsageError(`--from ${raw} is neither a stream entry id (ms-seq) nor a sequence number`);
  const seq = BigInt(raw);
  let lowest: bigint | null = null;
  let from = '-';
  for (;;) {
    const page = (await redis.xrange(stream, from, lastDelivered, 'COUNT', 1000)) as RawEntry[];
    for (const [id, fields] of page) {
      const value = fieldOf(fields, 'seq');
      if (value === undefined || !/^\d+$/.test(value)) continue;
      if (BigInt(value) === seq) return id;
      if (lowest === null || BigInt(value) < lowest) lowest = BigInt(value);
    }
    if (page.length < 1000) break;
    from = `(${page[page.length - 1]![0]}`;
  }
  if (lowest === null)
    throw new ReplayUsageError(`entries of ${stream} carry no seq field: give --from an entry id (ms-seq)`);
  throw new ReplayRefusedError(
    `seq ${raw} is not among the entries of ${stream} that were read and are retained (${range}; lowest seq there ${lowest})`,
  );
}

async function shiftedBack(
  redis: Redis,
  stream: string,
  lastDelivered: string,
  by: number,
  range: string,
): Promise<string> {
  if (by >= 0)
    throw new ReplayRefusedError(
      `--shift-by ${by}: a replay only goes back (a negative number); moving forward would skip entries never processed`,
    );
  const back = (await redis.xrevrange(stream, lastDelivered, '-', 'COUNT', -by)) as RawEntry[];
  if (back.length < -by)
    throw new ReplayRefusedError(
      `--shift-by ${by} goes before the oldest entry ${stream} retains (${range}: ${back.length} entries there)`,
    );
  return back[back.length - 1]![0];
}

async function countBetween(redis: Redis, stream: string, first: string, last: string): Promise<number> {
  let count = 0;
  let from = first;
  for (;;) {
    // Ids only would be cheaper, but XRANGE has no such form; pages keep each reply small.
    const page = (await redis.xrange(stream, from, last, 'COUNT', 1000)) as RawEntry[];
    count += page.length;
    if (page.length < 1000) return count;
    from = `(${page[page.length - 1]![0]}`;
  }
}

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
