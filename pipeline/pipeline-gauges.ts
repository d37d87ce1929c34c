/**
 * Gauges of the pipeline's state in Redis rather than of one process: every stage's lag (in
 * entries and in seconds) and the DLQ's size by stage and reason. Any process that runs a stage
 * reports them, read when /metrics is scraped — so a stage with no live instance still shows
 * its lag growing. Several processes report the same values: aggregate with `max by (stage)`.
 *
 * Cost per scrape: per stream one XINFO GROUPS, per group one XPENDING (summary form) or one
 * XRANGE of a single entry; the DLQ is one HGETALL + XLEN of counts kept by the scripts that
 * add and delete dead letters (lib/dlq-counts.lua), recounted only when those disagree.
 */
import type { Redis } from 'ioredis';
import { Gauge } from 'prom-client';
import { type GroupInfo, groupsOf } from './backlog.ts';
import type { Keys } from './keys.ts';
import type { Logger } from './log.ts';
import { registry } from './metrics.ts';
import { runScript } from './scripts.ts';

/** What one scrape reads; several gauges ask at once, Redis is read once. */
let source: (() => Promise<void>) | undefined;
const collect = () => source?.();

export const pipelineGauges = {
  lagEntries: new Gauge({
    name: 'atlas_consumer_lag_entries',
    help: "Entries of the stage's input its consumer group has not read yet",
    labelNames: ['stage'],
    registers: [registry],
    collect,
  }),
  pendingEntries: new Gauge({
    name: 'atlas_pending_entries',
    help: 'Entries the stage read and has not acknowledged yet',
    labelNames: ['stage'],
    registers: [registry],
    collect,
  }),
  lagSeconds: new Gauge({
    name: 'atlas_consumer_lag_seconds',
    help: "Age of the oldest entry of the stage's input not yet acknowledged (unread or pending); 0 when none",
    labelNames: ['stage'],
    registers: [registry],
    collect,
  }),
  dlqEntries: new Gauge({
    name: 'atlas_dlq_entries',
    help: 'Dead letters in the DLQ, by the stage that dead-lettered them and why',
    labelNames: ['stage', 'reason'],
    registers: [registry],
    collect,
  }),
};

/**
 * Reports the pipeline gauges of `streams` (the pipeline's stream names, from the stages layer)
 * from `redis` (a fail-fast connection: a scrape must never wait on an outage) until the returned
 * function is called. Redis unreachable: the gauges are left empty rather than stale.
 */
export function reportPipeline(
  redis: Redis,
  keys: Keys,
  streams: readonly string[],
  log: Logger,
): () => void {
  let inFlight: Promise<void> | undefined;
  let failing = false;
  const read = async () => {
    try {
      await readPipeline(redis, keys, streams, log);
      failing = false;
    } catch (err) {
      for (const gauge of Object.values(pipelineGauges)) gauge.reset();
      // Once per streak of failed scrapes, not once per scrape.
      if (!failing) log.warn({ err }, 'pipeline gauges (lag, DLQ) unreadable; reported empty');
      failing = true;
    }
  };
  const report = () => {
    inFlight ??= read().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  source = report;
  return () => {
    if (source === report) source = undefined;
  };
}

async function readPipeline(
  redis: Redis,
  keys: Keys,
  streams: readonly string[],
  log: Logger,
): Promise<void> {
  const now = Date.now();
  const lag: Array<[string, number | null, number, number]> = [];
  for (const name of streams) {
    const stream = keys.stream(name);
    for (const group of await groupsOf(redis, stream)) {
      const oldest = await oldestUnacknowledged(redis, stream, group);
      lag.push([group.name, group.lag, group.pending, oldest ? ageSeconds(oldest, now) : 0]);
    }
  }
  const dlq = await dlqCounts(redis, keys, log);
  for (const gauge of Object.values(pipelineGauges)) gauge.reset();
  for (const [stage, entries, pending, seconds] of lag) {
    // Redis cannot always count a group's unread entries (after deletions inside the range): no guess.
    if (entries !== null) pipelineGauges.lagEntries.set({ stage }, entries);
    pipelineGauges.pendingEntries.set({ stage }, pending);
    pipelineGauges.lagSeconds.set({ stage }, seconds);
  }
  for (const [field, count] of dlq) {
    const cut = field.indexOf('|');
    pipelineGauges.dlqEntries.set({ stage: field.slice(0, cut), reason: field.slice(cut + 1) }, count);
  }
}

/**
 * The id of the group's oldest entry not yet acknowledged: its oldest pending one (delivered
 * entries are older than unread ones), else the first entry after the last delivered.
 */
async function oldestUnacknowledged(
  redis: Redis,
  stream: string,
  group: GroupInfo,
): Promise<string | undefined> {
  if (group.pending > 0) {
    const [, smallest] = (await redis.xpending(stream, group.name)) as [number, string | null];
    if (smallest) return smallest;
  }
  if (group.lag === 0) return undefined;
  const [next] = await redis.xrange(stream, `(${group.lastDeliveredId}`, '+', 'COUNT', 1);
  return next?.[0];
}

/** Stream ids begin with the ms they were added at (every append is XADD *). */
function ageSeconds(id: string, now: number): number {
  return Math.max(0, now - Number(id.slice(0, id.indexOf('-')))) / 1000;
}

/** The DLQ's counts by "<stage>|<reason>", recounted from the DLQ when they disagree with it. */
async function dlqCounts(redis: Redis, keys: Keys, log: Logger): Promise<Array<[string, number]>> {
  const replies = await redis.multi().hgetall(keys.dlqCounts).xlen(keys.dlq).exec();
  const counts = Object.entries((replies?.[0]?.[1] ?? {}) as Record<string, string>).map(
    ([field, n]): [string, number] => [field, Number(n)],
  );
  const total = Number(replies?.[1]?.[1] ?? 0);
  if (counts.reduce((sum, [, n]) => sum + n, 0) === total) return counts;
  log.info({ dlq: total }, 'DLQ counts disagree with the DLQ (dead letters from before them?): recounting');
  await runScript(redis, 'dlq-recount', [keys.dlq, keys.dlqCounts], []);
  const recounted = await redis.hgetall(keys.dlqCounts);
  return Object.entries(recounted).map(([field, n]) => [field, Number(n)]);
}
