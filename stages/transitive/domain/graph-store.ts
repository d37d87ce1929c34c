/**
 * The topology state of DESIGN §3 — topics, explicit edges, topic edges — over dense handles,
 * with the reverse indexes the incremental trees need (who points at a space, who points at
 * a topic).
 */
import type { EdgeKind } from '../../topology/tree.ts';
import { EdgeLists } from './edge-lists.ts';
import { IdTable, insertById, removeById } from './id-table.ts';

export type ExplicitKind = 'verified' | 'related';

/** The plain, serialisable state: what a checkpoint stores. */
export interface GraphState {
  topics: [string, string][];
  edges: [string, string, ExplicitKind][];
  topicEdges: [string, string][];
}

/**
 * A tree edge label: ROOT, VERIFIED, RELATED, or TOPIC + topic handle. Smaller labels win when
 * one node offers a target several candidates, which is exactly the candidate order of §3.
 */
export const ROOT = 0;
export const VERIFIED = 1;
export const RELATED = 2;
export const TOPIC = 3;
export const NO_EDGE = -1;

const KIND_BIT: Record<ExplicitKind, number> = { verified: 1, related: 2 };

export function edgeOf(label: number): EdgeKind {
  return label === ROOT ? 'root' : label === VERIFIED ? 'verified' : label === RELATED ? 'related' : 'topic';
}

const NONE: readonly number[] = [];

export class GraphStore {
  readonly spaces = new IdTable();
  readonly topics = new IdTable();
  private readonly topicOfSpace: number[] = [];
  /** Explicit edges per source (target, kind bits) and per target (source, kind bits). */
  private readonly out = new EdgeLists();
  private readonly in = new EdgeLists();
  /** Topic edges per source, in topic id order. */
  private readonly topicsOut: (number[] | undefined)[] = [];
  /** Spaces that announced each topic, in id order. */
  private readonly members: (number[] | undefined)[] = [];
  private readonly topicSources: (Set<number> | undefined)[] = [];

  space(id: string): number {
    const handle = this.spaces.intern(id);
    while (this.topicOfSpace.length <= handle) this.topicOfSpace.push(-1);
    return handle;
  }

  topic(id: string): number {
    return this.topics.intern(id);
  }

  topicOf(space: number): number {
    return this.topicOfSpace[space] ?? -1;
  }

  membersOf(topic: number): readonly number[] {
    return this.members[topic] ?? NONE;
  }

  topicsOf(space: number): readonly number[] {
    return this.topicsOut[space] ?? NONE;
  }

  sourcesOf(topic: number): ReadonlySet<number> | undefined {
    return this.topicSources[topic];
  }

  hasTopicEdge(source: number, topic: number): boolean {
    return this.topicSources[topic]?.has(source) ?? false;
  }

  /** 'conflict' when the space exists with another topic; state is then unchanged. */
  create(space: number, topic: number): 'applied' | 'noop' | 'conflict' {
    const known = this.topicOf(space);
    if (known !== -1) return known === topic ? 'noop' : 'conflict';
    this.topicOfSpace[space] = topic;
    this.members[topic] = insertById(this.members[topic], space, this.spaces.ids);
    return 'applied';
  }

  hasEdge(source: number, target: number, kind: ExplicitKind): boolean {
    return (this.out.bits(source, target) & KIND_BIT[kind]) !== 0;
  }

  /** Adds or removes one explicit edge; false when that was already the case. */
  setEdge(source: number, target: number, kind: ExplicitKind, present: boolean): boolean {
    if (this.hasEdge(source, target, kind) === present) return false;
    const bits = this.out.bits(source, target) ^ KIND_BIT[kind];
    this.out.set(source, target, bits);
    this.in.set(target, source, bits);
    return true;
  }

  /** Adds or removes one topic edge; false when that was already the case. */
  setTopicEdge(source: number, topic: number, present: boolean): boolean {
    if (this.hasTopicEdge(source, topic) === present) return false;
    const sources = this.topicSources[topic] ?? new Set<number>();
    this.topicSources[topic] = sources;
    if (present) {
      sources.add(source);
      this.topicsOut[source] = insertById(this.topicsOut[source], topic, this.topics.ids);
    } else {
      sources.delete(source);
      this.topicsOut[source] = removeById(this.topicsOut[source]!, topic, this.topics.ids);
    }
    return true;
  }

  /**
   * The label of the first candidate `x` offers `y` (verified < related < topic), NO_EDGE when
   * none. `full` includes topic edges (mode full), otherwise explicit edges only.
   */
  firstLabel(x: number, y: number, full: boolean): number {
    const bits = this.out.bits(x, y);
    if (bits & 1) return VERIFIED;
    if (bits & 2) return RELATED;
    if (!full) return NO_EDGE;
    const topic = this.topicOf(y);
    return topic !== -1 && this.hasTopicEdge(x, topic) ? TOPIC + topic : NO_EDGE;
  }

  /** Appends every candidate target of `x` to `into` (a target may repeat). */
  targets(x: number, full: boolean, into: number[]): void {
    this.out.others(x, into);
    if (!full) return;
    for (const topic of this.topicsOf(x)) for (const m of this.membersOf(topic)) into.push(m);
  }

  /** Appends every space that offers `y` as a candidate to `into` (a source may repeat). */
  sources(y: number, full: boolean, into: number[]): void {
    this.in.others(y, into);
    if (!full) return;
    const topic = this.topicOf(y);
    const sources = topic === -1 ? undefined : this.topicSources[topic];
    if (sources) for (const s of sources) into.push(s);
  }

  snapshot(): GraphState {
    const id = (h: number) => this.spaces.id(h);
    const topics: [string, string][] = [];
    const edges: [string, string, ExplicitKind][] = [];
    const topicEdges: [string, string][] = [];
    for (let s = 0; s < this.spaces.size; s++) {
      const topic = this.topicOf(s);
      if (topic !== -1) topics.push([id(s), this.topics.id(topic)]);
      for (const [t, bits] of this.out.entries(s)) {
        if (bits & 1) edges.push([id(s), id(t), 'verified']);
        if (bits & 2) edges.push([id(s), id(t), 'related']);
      }
      for (const topic of this.topicsOf(s)) topicEdges.push([id(s), this.topics.id(topic)]);
    }
    const byText = (a: string[], b: string[]) => (a.join('|') < b.join('|') ? -1 : 1);
    return { topics: topics.sort(byText), edges: edges.sort(byText), topicEdges: topicEdges.sort(byText) };
  }

  /** Loads a snapshot into an empty store; a conflicting topic keeps the first one seen. */
  load(state: GraphState): void {
    for (const [space, topic] of state.topics) this.create(this.space(space), this.topic(topic));
    for (const [s, t, kind] of state.edges) this.setEdge(this.space(s), this.space(t), kind, true);
    for (const [s, topic] of state.topicEdges) this.setTopicEdge(this.space(s), this.topic(topic), true);
  }
}
