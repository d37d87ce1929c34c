/** Reading and writing streams directly, the way `redis-cli` would, for setup and assertions. */
import type { Redis } from 'ioredis';
import { groupsOf } from '../../pipeline/backlog.ts';
import { type Entry, type Fields, parseEntries } from '../../pipeline/entry.ts';

/** XADDs entries (fields in the given order); returns their ids. */
export async function addEntries(redis: Redis, stream: string, entries: Fields[]): Promise<string[]> {
  const pipeline = redis.pipeline();
  for (const fields of entries) pipeline.xadd(stream, '*', ...Object.entries(fields).flat());
  const replies = (await pipeline.exec()) ?? [];
  return replies.map(([err, id]) => {
    if (err) throw err;
    return String(id);
  });
}

/** Every entry of a stream, oldest first. */
export async function readAll(redis: Redis, stream: string): Promise<Entry[]> {
  const out: Entry[] = [];
  let from = '-';
  for (;;) {
    const raw = (await redis.callBuffer('XRANGE', stream, from, '+', 'COUNT', 1000)) as [Buffer, Buffer[]][];
    const page = parseEntries(raw);
    out.push(...page);
    if (page.length < 1000) return out;
    from = `(${page[page.length - 1]!.id}`;
  }
}

/** The values of one field over a stream, oldest first (entries without it are left out). */
export async function fieldValues(redis: Redis, stream: string, field: string): Promise<string[]> {
  return (await readAll(redis, stream)).flatMap((e) => {
    const v = e.optionalText(field);
    return v === undefined ? [] : [v];
  });
}

/** Pending entries of a group (optionally of one consumer). */
export async function pendingCount(
  redis: Redis,
  stream: string,
  group: string,
  consumer?: string,
): Promise<number> {
  if (consumer) {
    const rows = (await redis.xpending(stream, group, '-', '+', 100000, consumer)) as unknown[];
    return rows.length;
  }
  const summary = (await redis.xpending(stream, group)) as [number, ...unknown[]];
  return Number(summary[0]);
}

/** A group has read and acknowledged everything in the stream. */
export async function drained(redis: Redis, stream: string, group: string): Promise<boolean> {
  const g = (await groupsOf(redis, stream)).find((x) => x.name === group);
  return g !== undefined && g.pending === 0 && g.lag === 0;
}

/** Reads everything a group has not read yet and acknowledges it (a downstream consumer). */
export async function consumeAll(redis: Redis, stream: string, group: string): Promise<Entry[]> {
  try {
    await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
  } catch (err) {
    if (!(err instanceof Error && err.message.includes('BUSYGROUP'))) throw err;
  }
  const out: Entry[] = [];
  for (;;) {
    const reply = (await redis.callBuffer(
      'XREADGROUP',
      'GROUP',
      group,
      'test-consumer',
      'COUNT',
      1000,
      'STREAMS',
      stream,
      '>',
    )) as [Buffer, [Buffer, Buffer[]][]][] | null;
    const entries = parseEntries(reply?.[0]?.[1] ?? null);
    if (entries.length === 0) return out;
    await redis.xack(stream, group, ...entries.map((e) => e.id));
    out.push(...entries);
  }
}

/** 1..n as strings. */
export function range(n: number, from = 1): string[] {
  return Array.from({ length: n }, (_, i) => String(from + i));
}

/** Sorted numerically; for "each exactly once" checks on seq fields. */
export function numericSort(values: string[]): string[] {
  return [...values].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
}
