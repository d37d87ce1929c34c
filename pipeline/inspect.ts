/** A readable view of XINFO for every stream of the pipeline (`atlas streams`), and its health. */
import type { Redis } from 'ioredis';
import { groupsOf } from './backlog.ts';
import { controlPrefix } from './control.ts';
import { generationKeys, LOST_PREFIX } from './generation.ts';
import { type Beat, pipelineProblems, readBeats } from './heartbeat.ts';
import type { Keys } from './keys.ts';

export interface StreamView {
  stream: string;
  length: number;
  groups: Array<{
    name: string;
    consumers: number;
    lag: number | null;
    pending: number;
    oldestPendingAgeMs: number | null;
  }>;
}

export async function streamKeys(redis: Redis, keys: Keys): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await redis.call(
      'SCAN',
      cursor,
      'MATCH',
      keys.stream('*'),
      'COUNT',
      1000,
      'TYPE',
      'stream',
    )) as [string, string[]];
    found.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  // The control queues' event streams are BullMQ's bookkeeping, not the pipeline's data.
  const control = `${controlPrefix(keys)}:`;
  return found.filter((k) => !k.startsWith(control)).sort();
}

/** Where a stream comes in `order` (the pipeline's streams), the others (outputs, tests) after them. */
function pipelineRank(keys: Keys, order: readonly string[], stream: string): number {
  const at = order.findIndex((name) => keys.stream(name) === stream);
  return at === -1 ? Number.MAX_SAFE_INTEGER : at;
}

/**
 * Every stream of the pipeline with its consumer groups: those of `order` (stream names in
 * pipeline order, from the stages layer) first, in that order, then the others by name.
 */
export async function describeStreams(
  redis: Redis,
  keys: Keys,
  order: readonly string[],
): Promise<StreamView[]> {
  const views: StreamView[] = [];
  const found = await streamKeys(redis, keys);
  const rank = (stream: string) => pipelineRank(keys, order, stream);
  found.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  for (const stream of found) {
    const groups = [];
    for (const g of await groupsOf(redis, stream)) {
      const summary = (await redis.xpending(stream, g.name)) as [
        number,
        string | null,
        string | null,
        unknown,
      ];
      const oldest = summary[1] ? Date.now() - Number(summary[1].split('-')[0]) : null;
      groups.push({
        name: g.name,
        consumers: g.consumers,
        lag: g.lag,
        pending: g.pending,
        oldestPendingAgeMs: oldest,
      });
    }
    views.push({ stream, length: await redis.xlen(stream), groups });
  }
  return views;
}

/**
 * The prefixes that have streams in this Redis (from their `{prefix}:` hash tag), for an operator
 * pointed at an empty prefix: the pipeline they mean is probably one of these.
 */
export async function knownPrefixes(redis: Redis): Promise<string[]> {
  const found = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = (await redis.call(
      'SCAN',
      cursor,
      'MATCH',
      '{*}:*',
      'COUNT',
      1000,
      'TYPE',
      'stream',
    )) as [string, string[]];
    for (const key of batch) found.add(key.slice(1, key.indexOf('}')));
    cursor = next;
  } while (cursor !== '0');
  return [...found].sort();
}

export interface Health {
  /** The pipeline generation in Redis (null: none, the state is gone or never was). */
  generation: string | null;
  instances: Beat[];
  problems: string[];
}

export async function describeHealth(redis: Redis, keys: Keys): Promise<Health> {
  const { stages, beats } = await readBeats(redis, keys);
  const generation = await redis.get(generationKeys(keys).current);
  return { generation, instances: beats, problems: pipelineProblems(stages, beats) };
}

export function printHealth({ generation, instances, problems }: Health): void {
  const shown =
    generation === null ? '(none)' : generation.startsWith(LOST_PREFIX) ? '(declared lost)' : generation;
  console.log(`pipeline generation ${shown}: ${problems.length === 0 ? 'ready' : 'NOT READY'}`);
  for (const p of problems) console.log(`  ! ${p}`);
  const now = Date.now();
  for (const b of [...instances].sort((x, y) => x.stage.localeCompare(y.stage))) {
    const progress = `${((now - b.progress_at) / 1000).toFixed(1)}s ago`;
    console.log(
      `  ${b.stage} ${b.consumer} pid=${b.pid} ${b.role} progress=${progress}${b.stalled ? ' STALLED' : ''}`,
    );
  }
}
