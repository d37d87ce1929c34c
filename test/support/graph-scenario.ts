/**
 * Topology scenarios for the graph tests: the fixtures under shared/fixtures/topology, a seeded
 * generator of larger event sequences, and the expected outcome of a sequence computed in the
 * test process by the naive reference (test/reference/naive-canonical.ts): final graphs,
 * per-event emission counts, conflicts, the resulting topology.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SpaceType, TopologyEvent } from '../../stages/topology/events.ts';
import { normalizeHex } from '../../stages/topology/ids.ts';
import type { EventMeta } from '../../stages/topology/tree.ts';
import { NaiveTopology, type PlainNode } from '../reference/naive-canonical.ts';
import type { Envelope } from './events.ts';
import { prng } from './prng.ts';

export type { Envelope, PlainNode };

/** A canonical graph as the fixtures and `atlas canonical show --json` (normalised) give it. */
export interface FinalGraph {
  root_id: string;
  tree: PlainNode;
  canonical_space_ids: string[];
}

export interface TopologyFixture {
  file: string;
  name: string;
  roots: string[];
  events: Envelope[];
  expected: Record<string, { emissions_per_event_mode: number; final: FinalGraph }>;
}

export const FIXTURE_DIR = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures', 'topology');

/** Every fixture file, discovered (sorted by file name). */
export function loadFixtures(dir = FIXTURE_DIR): TopologyFixture[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const raw = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Omit<TopologyFixture, 'file'>;
      return { ...raw, file, name: raw.name ?? file.replace(/\.json$/, '') };
    });
}

// ---------------------------------------------------------------------------------------------
// The expected outcome of an event sequence

export interface Expectation {
  /** Final canonical graph per root. */
  finals: Record<string, FinalGraph>;
  /** Messages per-event emission produces per root. */
  emissions: Record<string, number>;
  /** event_ids that are a space_conflict (applied in order, duplicates dropped). */
  conflicts: string[];
  /** event_ids the validate stage refuses. */
  invalid: string[];
  /** Distinct events accepted (duplicates of an event_id counted once). */
  accepted: number;
  /** The topology after the sequence, in the transitive checkpoint's shape. */
  state: { topics: Record<string, string>; edges: string[]; topicEdges: string[] };
}

const id16 = (raw: unknown): string | null => (typeof raw === 'string' ? normalizeHex(raw, 16) : null);

/** The event the validate stage makes of an envelope (ids normalised; meta as given), or null when invalid. */
export function toTopologyEvent(e: Envelope): TopologyEvent | null {
  const p = e.payload as Record<string, unknown>;
  const meta = p.meta as EventMeta;
  if (e.event_type === 'space.created') {
    const space_id = id16(p.space_id);
    const topic_id = id16(p.topic_id);
    if (!space_id || !topic_id) return null;
    return { event_type: 'space.created', space_id, topic_id, space_type: p.space_type as SpaceType, meta };
  }
  if (e.event_type !== 'space.trust_extended' && e.event_type !== 'space.trust_revoked') return null;
  const source_space_id = id16(p.source_space_id);
  const ext = p.extension as Record<string, string> | undefined;
  if (!source_space_id || !ext) return null;
  if (ext.kind === 'subtopic') {
    const target_topic_id = id16(ext.target_topic_id);
    if (!target_topic_id) return null;
    return {
      event_type: e.event_type,
      source_space_id,
      extension: { kind: 'subtopic', target_topic_id },
      meta,
    };
  }
  const target_space_id = id16(ext.target_space_id);
  if (!target_space_id || (ext.kind !== 'verified' && ext.kind !== 'related')) return null;
  return { event_type: e.event_type, source_space_id, extension: { kind: ext.kind, target_space_id }, meta };
}

/**
 * Replays `events` in order through the naive reference (a repeated event_id is a duplicate and
 * applied once). Emissions per root, per-event mode: the first computation, then one per event
 * after which the tree differs (only an applied event can change one).
 */
export function expectationOf(roots: string[], events: Envelope[]): Expectation {
  const naive = new NaiveTopology();
  const seen = new Set<string>();
  const last = new Map<string, string>();
  const emissions: Record<string, number> = Object.fromEntries(roots.map((r) => [r, 0]));
  const conflicts: string[] = [];
  const invalid: string[] = [];
  const topics: Record<string, string> = {};
  const edges = new Set<string>();
  const topicEdges = new Set<string>();
  for (const envelope of events) {
    if (seen.has(envelope.event_id)) continue;
    seen.add(envelope.event_id);
    const event = toTopologyEvent(envelope);
    if (!event) {
      invalid.push(envelope.event_id);
      continue;
    }
    const outcome = naive.apply(event);
    if (outcome === 'conflict') conflicts.push(envelope.event_id);
    if (outcome === 'applied') mirror(event);
    for (const root of roots) {
      if (outcome !== 'applied' && last.has(root)) continue;
      const tree = JSON.stringify(naive.canonical(root).tree);
      if (last.get(root) !== tree) emissions[root]!++;
      last.set(root, tree);
    }
  }
  const finals: Record<string, FinalGraph> = {};
  for (const root of roots) {
    const plain = naive.canonical(root);
    finals[root] = { root_id: root, tree: plain.tree, canonical_space_ids: plain.canonical_space_ids };
  }
  return {
    finals,
    emissions,
    conflicts,
    invalid,
    accepted: seen.size,
    state: { topics, edges: [...edges].sort(), topicEdges: [...topicEdges].sort() },
  };

  function mirror(event: TopologyEvent): void {
    if (event.event_type === 'space.created') {
      topics[event.space_id] = event.topic_id;
      return;
    }
    const ext = event.extension;
    const set = ext.kind === 'subtopic' ? topicEdges : edges;
    const key =
      ext.kind === 'subtopic'
        ? `${event.source_space_id}|${ext.target_topic_id}`
        : `${event.source_space_id}|${ext.target_space_id}|${ext.kind}`;
    if (event.event_type === 'space.trust_extended') set.add(key);
    else set.delete(key);
  }
}

// ---------------------------------------------------------------------------------------------
// A seeded generator of larger sequences

export interface Scenario {
  seed: number;
  roots: string[];
  /** What is posted, in order (duplicates included: same envelope, same event_id). */
  events: Envelope[];
}

export interface ScenarioOptions {
  seed: number;
  events?: number;
  spaces?: number;
  topics?: number;
  roots?: number;
  /** Prefix of event_ids (keeps scenarios of one run apart). */
  tag?: string;
}

/**
 * Creations (scattered through the sequence, so edges often name spaces not created yet),
 * verified/related extensions and revocations, subtopics, edges to never-created spaces,
 * self edges, re-creations with the same topic (no-ops), a few conflicts (another topic),
 * duplicates (an earlier envelope posted again), an invalid payload, and ids written as
 * `0x…`, upper case or dashed UUIDs.
 */
export function generateScenario(opts: ScenarioOptions): Scenario {
  const rand = prng(opts.seed);
  const total = opts.events ?? 400;
  const nSpaces = opts.spaces ?? 40;
  const nTopics = opts.topics ?? 14;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  // Ids whose first byte scatters them, so byte order is unrelated to creation order.
  const spaces = Array.from(
    { length: nSpaces },
    (_, i) =>
      `${((i * 97 + 13) % 256).toString(16).padStart(2, '0')}${'5a'.repeat(13)}${i.toString(16).padStart(4, '0')}`,
  );
  const ghosts = Array.from(
    { length: 4 },
    (_, i) => `${(i * 61 + 7).toString(16).padStart(2, '0')}${'9e'.repeat(15)}`,
  );
  const topics = Array.from(
    { length: nTopics },
    (_, i) =>
      `${((i * 53 + 29) % 256).toString(16).padStart(2, '0')}${'c3'.repeat(13)}${i.toString(16).padStart(4, '0')}`,
  );
  const topicOf = spaces.map(() => pick(topics));
  const roots = spaces.slice(0, opts.roots ?? 3);
  const tag = opts.tag ?? `s${opts.seed}`;

  const events: Envelope[] = [];
  const uncreated = [...spaces.keys()];
  const created: number[] = [];
  const edges = new Set<string>();
  const topicEdges = new Set<string>();
  let block = 100;

  const spell = (id: string): string => {
    const r = rand();
    if (r < 0.08) return `0x${id.toUpperCase()}`;
    if (r < 0.14)
      return `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20)}`;
    return id;
  };
  const meta = () => {
    block += 1 + Math.floor(rand() * 3);
    return {
      block_number: rand() < 0.5 ? block : String(block),
      block_timestamp: 1_700_000_000 + block * 12,
      tx_hash: `0x${block.toString(16).padStart(64, '0')}`,
      cursor: `${tag}:${block}`,
    };
  };
  const push = (event_type: string, payload: Record<string, unknown>): void => {
    events.push({
      event_id: `${tag}-${events.length}`,
      event_type,
      source: 'graph-test',
      timestamp: 1_700_000_000_000 + events.length,
      version: 1,
      payload: { ...payload, meta: meta() },
    });
  };
  const create = (i: number, topic = topicOf[i]!): void =>
    push('space.created', {
      space_id: spell(spaces[i]!),
      topic_id: spell(topic),
      space_type: { kind: 'personal', owner: `0x${'ab'.repeat(32)}` },
    });
  const trust = (type: 'extended' | 'revoked', source: string, extension: Record<string, string>): void =>
    push(`space.trust_${type}`, {
      source_space_id: spell(source),
      extension: Object.fromEntries(
        Object.entries(extension).map(([k, v]) => [k, k === 'kind' ? v : spell(v)]),
      ),
    });

  // The roots exist from the start, so every root's graph grows from the first events.
  for (const r of roots.keys()) {
    create(r);
    uncreated.splice(uncreated.indexOf(r), 1);
    created.push(r);
  }
  const conflictsAt = new Set([Math.floor(total * 0.3), Math.floor(total * 0.7)]);
  const invalidAt = Math.floor(total * 0.5);
  // A fifth of the sources are roots, so the canonical graphs grow; the rest any created space.
  const source = (): string => (rand() < 0.2 ? pick(roots) : spaces[pick(created)]!);
  const target = (): string => (rand() < 0.06 ? pick(ghosts) : pick(spaces));
  const sorted = (set: Set<string>): string[] => [...set].sort();

  /** What happens next, by weight (the weights of impossible actions are 0). */
  const actions: Array<[weight: () => number, act: () => void]> = [
    [
      () => (uncreated.length > 0 ? 14 : 0),
      () => {
        const i = uncreated.splice(Math.floor(rand() * uncreated.length), 1)[0]!;
        created.push(i);
        create(i);
      },
    ],
    [() => (events.length > 10 ? 4 : 0), () => events.push(pick(events))], // a duplicate
    [() => 1, () => create(pick(created))], // the same topic again: a no-op
    [
      () => 1,
      () => {
        const s = source();
        trust('extended', s, { kind: 'verified', target_space_id: s }); // a self edge
      },
    ],
    [
      () => 26,
      () => {
        const s = source();
        const t = target();
        const kind = rand() < 0.6 ? 'verified' : 'related';
        edges.add(`${s}|${t}|${kind}`);
        trust('extended', s, { kind, target_space_id: t });
      },
    ],
    [
      () => (edges.size > 0 ? 20 : 0),
      () => {
        const e = pick(sorted(edges));
        edges.delete(e);
        const [s, t, kind] = e.split('|') as [string, string, string];
        trust('revoked', s, { kind, target_space_id: t });
      },
    ],
    [() => 3, () => trust('revoked', pick(spaces), { kind: 'related', target_space_id: pick(ghosts) })], // absent
    [
      () => 10,
      () => {
        const s = source();
        const topic = pick(topics);
        topicEdges.add(`${s}|${topic}`);
        trust('extended', s, { kind: 'subtopic', target_topic_id: topic });
      },
    ],
    [
      () => (topicEdges.size > 0 ? 5 : 0),
      () => {
        const e = pick(sorted(topicEdges));
        topicEdges.delete(e);
        const [s, topic] = e.split('|') as [string, string];
        trust('revoked', s, { kind: 'subtopic', target_topic_id: topic });
      },
    ],
  ];

  while (events.length < total) {
    const at = events.length;
    if (conflictsAt.has(at)) {
      const i = pick(created);
      create(i, topics.find((t) => t !== topicOf[i])!); // another topic: a conflict
      continue;
    }
    if (at === invalidAt) {
      push('space.trust_extended', {
        source_space_id: 'not-a-space-id',
        extension: { kind: 'verified', target_space_id: spaces[1]! },
      });
      continue;
    }
    const weights = actions.map(([w]) => w());
    let r = rand() * weights.reduce((a, b) => a + b, 0);
    let chosen = 0;
    while (chosen < actions.length - 1 && r >= weights[chosen]!) r -= weights[chosen++]!;
    actions[chosen]![1]();
  }
  return { seed: opts.seed, roots, events };
}
