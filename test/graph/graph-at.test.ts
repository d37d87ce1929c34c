/**
 * serialize's rebuild of an emission's graph from canonical's store (`graphAt`), against Redis:
 * the graph of an older entry is the held table (subtrees that left are still there) walked from
 * that entry's own tree and attached subtrees, with the held ids rolled back through the later
 * entries; a whole graph emitted after the entry makes it unavailable — a typed error, never a
 * guessed graph. The graph has an attached subtree that changes, so the attachment list matters.
 */
import { describe, expect, it } from 'vitest';
import { parseEntries } from '../../pipeline/entry.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { canonicalStore, GraphUnavailableError, graphAt } from '../../stages/canonical/store.ts';
import { streams } from '../../stages/streams.ts';
import type { TopologyEvent } from '../../stages/topology/events.ts';
import { DeltaReceiver, DeltaSender, type GraphDelta } from '../../stages/topology/graph-delta.ts';
import type { GraphWire } from '../../stages/topology/graph-wire.ts';
import { TopologyGraph } from '../../stages/transitive/domain/topology-graph.ts';
import { useRedis } from '../support/redis.ts';
import { idPool, propertyMeta as meta } from '../support/topology-arbitraries.ts';

const fx = useRedis('graph-at');
const [root, anchor, member, far, farther] = idPool(5, 0x31, '6a');
const [topic, other] = idPool(2, 0x82, 'b4');

const created = (space: string, topic_id: string): TopologyEvent => ({
  event_type: 'space.created',
  space_id: space,
  topic_id,
  space_type: { kind: 'personal', owner: '00'.repeat(32) },
  meta,
});
const trust = (source: string, target: string): TopologyEvent => ({
  event_type: 'space.trust_extended',
  source_space_id: source,
  extension: { kind: 'verified', target_space_id: target },
  meta,
});
const subtopic = (source: string, target: string): TopologyEvent => ({
  event_type: 'space.trust_extended',
  source_space_id: source,
  extension: { kind: 'subtopic', target_topic_id: target },
  meta,
});

/** Canonical's output for `steps`: each delta listing every attachment, as canonical writes them. */
function emissions(steps: TopologyEvent[][]): {
  deltas: GraphDelta[];
  wires: GraphWire[];
  held: DeltaReceiver;
} {
  const graph = new TopologyGraph([root!]);
  const sender = new DeltaSender();
  const held = new DeltaReceiver();
  const deltas: GraphDelta[] = [];
  const wires: GraphWire[] = [];
  for (const events of steps) {
    for (const e of events) graph.apply(e);
    const c = graph.canonical(root!);
    const delta = sender.delta(root!, c.graph, c.canonical_space_ids, meta);
    held.apply(delta);
    deltas.push({ ...delta, attached: held.head(root!)!.attached });
    wires.push(held.wire(root!));
  }
  return { deltas, wires, held };
}

/** Canonical's store holding the last graph (with every subtree ever sent) and its output stream. */
async function store(deltas: GraphDelta[], held: DeltaReceiver, keys: Keys) {
  const s = canonicalStore(keys);
  const multi = fx.redis.multi();
  multi.hset(s.held, root!, JSON.stringify(held.head(root!)));
  for (const d of deltas) for (const n of d.nodes) multi.hset(s.table(root!), n[0], JSON.stringify(n));
  multi.sadd(s.ids(root!), ...held.wire(root!).canonical_space_ids);
  for (const [i, d] of deltas.entries()) {
    const fields = [
      'root',
      root!,
      'sequence_number',
      String(i + 1),
      'hash',
      d.hash,
      'delta',
      JSON.stringify(d),
    ];
    multi.xadd(keys.stream(streams.canonical), '*', ...fields);
  }
  await multi.exec();
  return parseEntries((await fx.redis.xrangeBuffer(keys.stream(streams.canonical), '-', '+')) as never);
}

const steps: TopologyEvent[][] = [
  // The member's subtree hangs under the anchor, which points at the member's topic.
  [
    created(root!, other!),
    created(anchor!, other!),
    created(member!, topic!),
    trust(root!, anchor!),
    trust(root!, member!),
    subtopic(anchor!, topic!),
  ],
  // A change inside the attached subtree (and a new canonical space).
  [created(far!, other!), trust(member!, far!)],
  // Another one, the canonical set growing again.
  [created(farther!, other!), trust(far!, farther!)],
];

describe('graphAt: an emission rebuilt from canonical store', () => {
  it('gives every earlier emission exactly, attachments and ids included', async () => {
    const { deltas, wires, held } = emissions(steps);
    expect(deltas[1]!.attached.length).toBeGreaterThan(0);
    expect(deltas[1]!.attached[0]![1]).not.toBe(deltas[0]!.attached[0]![1]);
    const { keys } = fx.freshPrefix('graph-at');
    const entries = await store(deltas, held, keys);
    for (const [i, entry] of entries.entries()) {
      const rebuilt = new DeltaReceiver();
      for (const d of await graphAt(fx.redis, keys, entry)) rebuilt.apply(d);
      expect(rebuilt.wire(root!), `emission ${i + 1}`).toEqual(wires[i]);
    }
  });

  it('refuses, typed, an emission a whole graph was emitted after', async () => {
    const { deltas, held } = emissions(steps);
    const whole = held.whole(root!);
    const { keys } = fx.freshPrefix('graph-at');
    const entries = await store([deltas[0]!, deltas[1]!, whole], held, keys);
    const refused = graphAt(fx.redis, keys, entries[0]!);
    await expect(refused).rejects.toBeInstanceOf(GraphUnavailableError);
    await expect(refused).rejects.toThrow(/a whole graph was emitted after it/);
  });
});
