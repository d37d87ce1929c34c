/**
 * Every stage instance publishes a heartbeat in Redis (a key per instance that expires unless
 * renewed), so any process — the door's /ready, `atlas streams` — sees the whole pipeline:
 * which instance is active, when it last made progress, a stall, lost state, a sink down.
 */
import type { Redis } from 'ioredis';
import type { Keys } from './keys.ts';

export interface Beat {
  stage: string;
  consumer: string;
  pid: number;
  singleton: boolean;
  role: 'active' | 'standby' | 'lost';
  /** ms since the epoch of the last commit (or of the last moment with nothing to do). */
  progress_at: number;
  stalled: boolean;
  /** Why this instance is not ready (a sink's circuit open, state lost, …), or null. */
  problem: string | null;
  at: number;
}

const stagesKey = (keys: Keys) => keys.of('stages');
/** The heartbeat keys written so far: read with SMEMBERS, never found by a SCAN of the keyspace
 * (which holds a dedup key per accepted event, millions of them, on every /ready). */
const indexKey = (keys: Keys) => keys.of('heartbeats');
const beatKey = (keys: Keys, stage: string, consumer: string) => keys.of('heartbeat', stage, consumer);

export async function publishBeat(redis: Redis, keys: Keys, beat: Beat, ttlMs: number): Promise<void> {
  await redis
    .multi()
    .set(beatKey(keys, beat.stage, beat.consumer), JSON.stringify(beat), 'PX', ttlMs)
    .sadd(stagesKey(keys), beat.stage)
    .sadd(indexKey(keys), beatKey(keys, beat.stage, beat.consumer))
    .exec();
}

export async function withdrawBeat(redis: Redis, keys: Keys, stage: string, consumer: string): Promise<void> {
  const key = beatKey(keys, stage, consumer);
  await redis.multi().del(key).srem(indexKey(keys), key).exec();
}

/** Forgets the index entries of instances whose heartbeat expired (killed, not stopped). */
export async function pruneBeats(redis: Redis, keys: Keys): Promise<void> {
  const indexed = await redis.smembers(indexKey(keys));
  if (indexed.length === 0) return;
  const values = await redis.mget(...indexed);
  const gone = indexed.filter((_, i) => values[i] === null);
  if (gone.length > 0) await redis.srem(indexKey(keys), ...gone);
}

/** The live heartbeats, and every stage that ever ran against this pipeline. */
export async function readBeats(redis: Redis, keys: Keys): Promise<{ stages: string[]; beats: Beat[] }> {
  const stages = (await redis.smembers(stagesKey(keys))).sort();
  const indexed = await redis.smembers(indexKey(keys));
  const values = indexed.length > 0 ? await redis.mget(...indexed) : [];
  const beats = values.flatMap((v) => (v ? [JSON.parse(v) as Beat] : []));
  return { stages, beats };
}

/**
 * What keeps the pipeline from being ready, one line each: a stage that ran before and has no
 * live instance now (no active one, for a singleton), and every instance's own problem.
 */
export function pipelineProblems(stages: string[], beats: Beat[]): string[] {
  const problems: string[] = [];
  for (const stage of stages) {
    const mine = beats.filter((b) => b.stage === stage);
    if (mine.length === 0) problems.push(`${stage}: no live instance`);
    // A lost instance reports itself below.
    else if (mine[0]!.singleton && !mine.some((b) => b.role === 'active' || b.role === 'lost'))
      problems.push(`${stage}: no active instance (${mine.map((b) => b.role).join(', ')})`);
  }
  for (const b of beats) {
    if (b.problem) problems.push(`${b.stage} (${b.consumer}): ${b.problem}`);
    else if (b.stalled) problems.push(`${b.stage} (${b.consumer}): stalled`);
  }
  return problems;
}
