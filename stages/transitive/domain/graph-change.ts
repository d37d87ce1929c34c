/**
 * Applies one event to the graph store and says what it changed, in the terms the trees
 * need: candidate pairs that appeared or disappeared in each mode.
 */
import type { TopologyEvent } from '../../topology/events.ts';
import type { GraphStore } from './graph-store.ts';

export interface GraphChange {
  /** Candidates appeared (true) or disappeared (false). */
  insert: boolean;
  /** Flat (source, target) candidate pairs of explicit-mode trees. */
  explicit: number[];
  /** Flat (source, target) candidate pairs of full-mode trees. */
  full: number[];
  topicEdge?: { source: number; topic: number };
  member?: { space: number; topic: number };
}

export type EventEffect = GraphChange | 'noop' | 'conflict';

export function applyEvent(graph: GraphStore, event: TopologyEvent): EventEffect {
  if (event.event_type === 'space.created') return create(graph, event.space_id, event.topic_id);
  const present = event.event_type === 'space.trust_extended';
  const ext = event.extension;
  // Revoking something never seen is a no-op: don't register its ids.
  const space = (id: string) => (present ? graph.space(id) : graph.spaces.find(id));
  const source = space(event.source_space_id);
  if (source === undefined) return 'noop';
  if (ext.kind === 'subtopic') {
    const topic = present ? graph.topic(ext.target_topic_id) : graph.topics.find(ext.target_topic_id);
    if (topic === undefined || !graph.setTopicEdge(source, topic, present)) return 'noop';
    const full: number[] = [];
    for (const m of graph.membersOf(topic)) if (m !== source) full.push(source, m);
    return { insert: present, explicit: [], full, topicEdge: { source, topic } };
  }
  const target = space(ext.target_space_id);
  if (target === undefined || !graph.setEdge(source, target, ext.kind, present)) return 'noop';
  const pairs = source === target ? [] : [source, target];
  return { insert: present, explicit: pairs, full: pairs };
}

function create(graph: GraphStore, spaceId: string, topicId: string): EventEffect {
  const known = graph.spaces.find(spaceId);
  const announced = known === undefined ? -1 : graph.topicOf(known);
  if (announced !== -1) return graph.topics.id(announced) === topicId ? 'noop' : 'conflict';
  const space = graph.space(spaceId);
  const topic = graph.topic(topicId);
  graph.create(space, topic);
  const full: number[] = [];
  for (const s of graph.sourcesOf(topic) ?? []) if (s !== space) full.push(s, space);
  return { insert: true, explicit: [], full, member: { space, topic } };
}
