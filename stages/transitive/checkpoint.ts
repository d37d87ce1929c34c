/**
 * The transitive stage's durable state: the topology itself (topics, explicit edges, topic
 * edges), written as per-event deltas in the same atomic step as the stage's output.
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../../pipeline/keys.ts';
import type { Step } from '../../pipeline/stage.ts';
import type { TopologyEvent } from '../topology/events.ts';
import type { GraphState } from './domain/topology-graph.ts';

export interface CheckpointKeys {
  topics: string;
  edges: string;
  topicEdges: string;
  /** The last `out_seq` written: the stage's outputs are numbered densely, for canonical's order. */
  outSeq: string;
}

export function checkpointKeys(keys: Keys): CheckpointKeys {
  return {
    topics: keys.of('transitive', 'topics'),
    edges: keys.of('transitive', 'edges'),
    topicEdges: keys.of('transitive', 'topic-edges'),
    outSeq: keys.of('transitive', 'out-seq'),
  };
}

/** The write that mirrors an applied event in the checkpoint. */
export function writeDelta(step: Step, k: CheckpointKeys, event: TopologyEvent): void {
  if (event.event_type === 'space.created') {
    step.write('HSET', k.topics, event.space_id, event.topic_id);
    return;
  }
  const op = event.event_type === 'space.trust_extended' ? 'SADD' : 'SREM';
  const ext = event.extension;
  if (ext.kind === 'subtopic')
    step.write(op, k.topicEdges, `${event.source_space_id}|${ext.target_topic_id}`);
  else step.write(op, k.edges, `${event.source_space_id}|${ext.target_space_id}|${ext.kind}`);
}

export async function loadOutSeq(redis: Redis, k: CheckpointKeys): Promise<number> {
  return Number((await redis.get(k.outSeq)) ?? 0);
}

export async function loadState(redis: Redis, k: CheckpointKeys): Promise<GraphState> {
  const [topics, edges, topicEdges] = await Promise.all([
    redis.hgetall(k.topics),
    redis.smembers(k.edges),
    redis.smembers(k.topicEdges),
  ]);
  return {
    topics: Object.entries(topics),
    edges: edges.map((e) => e.split('|') as [string, string, 'verified' | 'related']),
    topicEdges: topicEdges.map((e) => e.split('|') as [string, string]),
  };
}
