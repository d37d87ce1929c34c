/**
 * `atlas recover`: brings a pipeline back after its state in Redis was lost. What Redis holds
 * then is not to be trusted (nothing, or state that processes started afresh built from the
 * events after the loss alone), so it is cleared; numbers continue after what the output already
 * holds (read back from it, never from Redis); a new generation is written and marked recovered
 * (the waiting processes adopt it and go on); and the newest `meta.cursor` in the output is
 * printed. The source must then be replayed: from its start for exact graphs (the topology
 * before the loss is gone), and the cursor says how far the output had got.
 */
import type { Redis } from 'ioredis';
import { deletePipelineKeys } from '../../pipeline/cleanup.ts';
import type { Config } from '../../pipeline/config.ts';
import { generationKeys, LOST_PREFIX, newGenerationId } from '../../pipeline/generation.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { canonicalStore, continueAfter } from '../../stages/canonical/store.ts';
import { openSink } from '../../stages/emit/index.ts';
import { sequencesOf, type Tail } from '../../stages/emit/sink.ts';
import { decodeEnvelope } from '../../stages/serialize/diff-codec.ts';
import { streams } from '../../stages/streams.ts';

export interface RootTail {
  root: string;
  sequence_number: string;
  generation: string | null;
  block_number: string | null;
  cursor: string | null;
}

export interface Recovery {
  /** false: the state was intact, nothing was changed. */
  recovered: boolean;
  previous: string | null;
  generation: string;
  roots: RootTail[];
  /** Roots whose numbering was moved on to continue after the output. */
  moved: number;
  /** Keys of the untrusted state that were deleted, and the unprocessed events among them. */
  cleared: { keys: number; events: number };
  /** The newest cursor in the output (highest block number): replay the source from there. */
  resume_cursor: string | null;
}

export async function recover(config: Config, redis: Redis, keys: Keys): Promise<Recovery> {
  const k = generationKeys(keys);
  // Reading only: no lease, so the sink could never initialise a producer (and fence the emit).
  const sink = openSink({ config, redis, keys, log: createLogger('silent'), lease: () => undefined });
  const tails = await sink.tails().finally(() => sink.stop());
  const roots = [...tails].map(([root, tail]) => describeTail(root, tail));
  const resume = newest(roots);
  const [current = null] = await redis.mget(k.current);
  const lineage = new Set(await redis.smembers(k.lineage));
  const intact =
    current !== null &&
    !current.startsWith(LOST_PREFIX) &&
    lineage.has(current) &&
    roots.every((r) => r.generation === null || lineage.has(r.generation));
  if (intact)
    return {
      recovered: false,
      previous: current,
      generation: current,
      roots,
      moved: 0,
      cleared: { keys: 0, events: 0 },
      resume_cursor: resume,
    };
  const events = await redis.xlen(keys.stream(streams.ingest));
  const cleared = { keys: await deletePipelineKeys(redis, keys), events };
  const moved = await continueAfter(redis, canonicalStore(keys), sequencesOf(tails));
  const generation = newGenerationId();
  const descends = roots.flatMap((r) => (r.generation ? [r.generation] : []));
  await redis
    .multi()
    .sadd(k.lineage, generation, ...descends)
    .set(k.current, generation)
    .set(k.recovered, generation)
    .exec();
  return { recovered: true, previous: current, generation, roots, moved, cleared, resume_cursor: resume };
}

function describeTail(root: string, tail: Tail): RootTail {
  // A snapshot or a diff: both carry the meta in the same field.
  const meta = tail.value ? decodeEnvelope(tail.value).meta : null;
  return {
    root,
    sequence_number: tail.seq.toString(),
    generation: tail.generation,
    block_number: meta?.block_number ?? null,
    cursor: meta?.cursor || null,
  };
}

function newest(roots: RootTail[]): string | null {
  let best: RootTail | undefined;
  for (const r of roots)
    if (r.cursor && (!best || BigInt(r.block_number ?? 0) > BigInt(best.block_number ?? 0))) best = r;
  return best?.cursor ?? null;
}

export function describeRecovery(r: Recovery): string {
  if (!r.recovered) return `the pipeline's state is intact (generation ${r.generation}); nothing to recover`;
  const lines = [
    `recovered: new generation ${r.generation} (was ${r.previous ?? 'missing'})`,
    `cleared the untrusted state in Redis: ${r.cleared.keys} key(s), ${r.cleared.events} event(s) accepted after the loss (a replay of the source brings them again)`,
    `output holds ${r.roots.length} root(s); ${r.moved} continue their sequence numbers after it:`,
    ...r.roots.map(
      (t) => `  ${t.root}  last sequence_number ${t.sequence_number}  cursor ${t.cursor ?? '-'}`,
    ),
    r.resume_cursor
      ? `replay the source from cursor ${r.resume_cursor} (the newest in the output); the topology state before it is gone from Redis: for exact graphs, replay the source from its start`
      : 'the output holds no cursor: replay the source from its start',
    'waiting processes adopt the new generation within a second and go on',
  ];
  return lines.join('\n');
}
