/**
 * Event streams for the end-to-end tests: a seeded "churn" sequence in which nearly every event
 * changes some root's canonical graph (so a few hundred events make a few hundred Kafka
 * messages), and the expected outcome of any sequence — final graphs, message counts, and which
 * event caused each message (a replay through the domain, as the pipeline runs it).
 */
import { expect } from 'vitest';
import { TopologyGraph } from '../../stages/transitive/domain/topology-graph.ts';
import { type RootStream, sequenceNumbers } from './e2e-kafka.ts';
import { type Envelope, expectationOf, toTopologyEvent } from './graph-scenario.ts';
import { prng } from './prng.ts';

export interface ChurnOptions {
  seed: number;
  events: number;
  roots?: number;
  spaces?: number;
  topics?: number;
  /** Prefix of event_ids and cursors. */
  tag?: string;
}

export interface Churn {
  roots: string[];
  events: Envelope[];
}

const hexId = (first: number, fill: string, n: number): string =>
  `${first.toString(16).padStart(2, '0')}${fill.repeat(13)}${n.toString(16).padStart(4, '0')}`;

/**
 * Roots and spaces are created first (ids scattered over byte order); then each event toggles an
 * edge — extends it when absent, revokes it when present: verified/related edges from a root
 * (most), between spaces (deeper trees), and subtopic edges (topic expansion).
 */
export function churnScenario(opts: ChurnOptions): Churn {
  const rand = prng(opts.seed);
  const tag = opts.tag ?? `churn${opts.seed}`;
  const nRoots = opts.roots ?? 2;
  const nSpaces = opts.spaces ?? 14;
  const nTopics = opts.topics ?? 5;
  const roots = Array.from({ length: nRoots }, (_, i) => hexId((i * 89 + 17) % 256, 'e1', i));
  const spaces = Array.from({ length: nSpaces }, (_, i) => hexId((i * 97 + 41) % 256, 'e2', i));
  const topics = Array.from({ length: nTopics }, (_, i) => hexId((i * 53 + 29) % 256, 'e3', i));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const events: Envelope[] = [];
  let block = 5000;
  const push = (event_type: string, payload: Record<string, unknown>): void => {
    block += 1 + Math.floor(rand() * 2);
    events.push({
      event_id: `${tag}-${events.length}`,
      event_type,
      source: 'e2e',
      timestamp: 1_732_300_000_000 + events.length,
      version: 1,
      payload: {
        ...payload,
        meta: {
          block_number: block,
          block_timestamp: 1_732_300_000 + block * 12,
          tx_hash: `0x${block.toString(16).padStart(64, '0')}`,
          cursor: `${tag}:${events.length}`,
          created_by: `0x${'cd'.repeat(32)}`,
        },
      },
    });
  };
  for (const id of [...roots, ...spaces])
    push('space.created', {
      space_id: id,
      topic_id: pick(topics),
      space_type: { kind: 'personal', owner: `0x${'ab'.repeat(32)}` },
    });
  const edges = new Set<string>();
  while (events.length < opts.events) {
    const r = rand();
    let source: string;
    let extension: Record<string, string>;
    if (r < 0.6) {
      source = pick(roots);
      extension = { kind: rand() < 0.6 ? 'verified' : 'related', target_space_id: pick(spaces) };
    } else if (r < 0.88) {
      source = pick(spaces);
      extension = { kind: rand() < 0.6 ? 'verified' : 'related', target_space_id: pick(spaces) };
    } else {
      source = rand() < 0.5 ? pick(roots) : pick(spaces);
      extension = { kind: 'subtopic', target_topic_id: pick(topics) };
    }
    const key = `${source}|${JSON.stringify(extension)}`;
    const present = edges.has(key);
    if (present) edges.delete(key);
    else edges.add(key);
    push(present ? 'space.trust_revoked' : 'space.trust_extended', { source_space_id: source, extension });
  }
  return { roots, events };
}

/**
 * Per root, the index (in `events`) of the event behind each message per-event emission makes,
 * in order: message k (sequence_number k + 1) carries that event's meta and traceparent. Also
 * cross-checks the counts with expectationOf (naive reference + domain).
 */
export function emissionCauses(roots: string[], events: Envelope[]): Map<string, number[]> {
  const domain = new TopologyGraph(roots);
  const seen = new Set<string>();
  const last = new Map<string, string>();
  const causes = new Map<string, number[]>(roots.map((r) => [r, []]));
  events.forEach((envelope, i) => {
    if (seen.has(envelope.event_id)) return;
    seen.add(envelope.event_id);
    const event = toTopologyEvent(envelope);
    if (!event) return;
    domain.apply(event);
    for (const root of roots) {
      const hash = domain.canonical(root).tree.hash;
      if (last.get(root) !== hash) causes.get(root)!.push(i);
      last.set(root, hash);
    }
  });
  const expected = expectationOf(roots, events);
  for (const root of roots)
    if (causes.get(root)!.length !== expected.emissions[root])
      throw new Error(`emission causes of ${root} disagree with expectationOf`);
  return causes;
}

/** The meta a message caused by `event` carries, in the decoded shape (u64 as decimal strings). */
export function expectedMeta(event: Envelope): {
  created_at: string;
  created_by: string;
  block_number: string;
  cursor: string;
} {
  const meta = (event.payload as { meta: Record<string, string | number> }).meta;
  const by = meta.created_by === undefined ? '' : String(meta.created_by).replace(/^0x/, '').toLowerCase();
  return {
    created_at: String(meta.block_timestamp),
    created_by: by,
    block_number: String(meta.block_number),
    cursor: String(meta.cursor),
  };
}

/**
 * The topic holds every update exactly once and in order: per root, sequence numbers 1..N with N
 * the per-event emission count (and what the canonical stage emitted), the last update the
 * expected final graph, and each update's meta that of the event that caused it.
 */
export function expectEveryUpdateOnce(
  roots: string[],
  events: Envelope[],
  perRoot: Map<string, RootStream>,
  canonical: Map<string, number[]>,
): void {
  const causes = emissionCauses(roots, events);
  const finals = expectationOf(roots, events).finals;
  for (const root of roots) {
    const stream = perRoot.get(root);
    const cause = causes.get(root)!;
    expect(sequenceNumbers(stream)).toEqual(Array.from({ length: cause.length }, (_, i) => i + 1));
    expect(canonical.get(root)).toEqual(sequenceNumbers(stream));
    const last = stream!.updates.at(-1)!;
    const { root_id, tree, canonical_space_ids } = last;
    expect({ root_id, tree, canonical_space_ids }).toEqual(finals[root]);
    stream!.updates.forEach((u, k) => {
      expect(u.meta, `meta of ${root} #${k + 1}`).toEqual(expectedMeta(events[cause[k]!]!));
    });
  }
}
