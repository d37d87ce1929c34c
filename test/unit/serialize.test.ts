import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { topology } from '../../proto/gen/atlas.js';
import { decodeCanonicalGraphUpdated } from '../../stages/serialize/decode.ts';
import { encodeCanonicalGraphUpdated } from '../../stages/serialize/encode.ts';
import type { GraphWire, JsonTreeNode, WireNode } from '../../stages/topology/graph-wire.ts';
import type { EdgeKind, EventMeta } from '../../stages/topology/tree.ts';
import { generatedEncoding } from '../support/proto-reference.ts';

const U64_MAX = 2n ** 64n - 1n;
const id = (n: number): string => n.toString(16).padStart(32, '0');

function expandedJson(nodes: readonly WireNode[], at = nodes.length - 1): JsonTreeNode {
  const [space_id, edge, topic_id, children] = nodes[at]!;
  const kids = children.map((c) => expandedJson(nodes, c));
  return edge === 'topic' ? { space_id, edge, topic_id, children: kids } : { space_id, edge, children: kids };
}

function graphOf(nodes: WireNode[], meta: Partial<EventMeta> = {}): GraphWire {
  const root = nodes[nodes.length - 1]![0];
  return {
    root_id: root,
    hash: '',
    expanded_nodes: 0,
    canonical_space_ids: [...new Set(nodes.map((n) => n[0]))].sort(),
    nodes,
    meta: { block_number: '7', block_timestamp: '1732300000', tx_hash: '', cursor: 'c:1', ...meta },
  };
}

const hexArb = (n: number) =>
  fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b).toString('hex'));
const u64Arb = fc
  .oneof(fc.constantFrom(0n, 1n, 127n, 128n, 2n ** 53n + 1n, U64_MAX), fc.bigInt({ min: 0n, max: U64_MAX }))
  .map(String);
const MAX_EXPANDED = 2000;

/** Random wire tables with shared subtrees; the expanded size is capped so the reference stays quick. */
const wireArb = fc
  .record({
    pool: fc.array(hexArb(16), { minLength: 1, maxLength: 6 }),
    topics: fc.array(hexArb(16), { minLength: 1, maxLength: 3 }),
    nodes: fc.array(
      fc.record({
        space: fc.nat(),
        edge: fc.constantFrom<EdgeKind>('verified', 'related', 'topic'),
        topic: fc.nat(),
        children: fc.array(fc.nat(), { maxLength: 4 }),
      }),
      { minLength: 1, maxLength: 30 },
    ),
    canonical: fc.array(hexArb(16), { maxLength: 5 }),
    sequence: u64Arb,
    meta: fc.record({
      block_number: u64Arb,
      block_timestamp: u64Arb,
      tx_hash: fc.constant(''),
      cursor: fc.string({ unit: 'grapheme', maxLength: 40 }),
      created_by: fc.option(hexArb(32), { nil: undefined }),
    }),
  })
  .map(({ pool, topics, nodes, canonical, sequence, meta }) => {
    const sizes: number[] = [];
    const table = nodes.map((n, i): WireNode => {
      const children: number[] = [];
      let size = 1;
      for (const c of i === 0 ? [] : n.children.map((c) => c % i)) {
        if (size + sizes[c]! > MAX_EXPANDED) continue;
        size += sizes[c]!;
        children.push(c);
      }
      sizes.push(size);
      const edge: EdgeKind = i === nodes.length - 1 ? 'root' : n.edge;
      const topic = edge === 'topic' ? topics[n.topic % topics.length]! : '';
      return [pool[n.space % pool.length]!, edge, topic, children];
    });
    const graph: GraphWire = {
      root_id: table[table.length - 1]![0],
      hash: '',
      expanded_nodes: sizes[sizes.length - 1]!,
      canonical_space_ids: canonical,
      nodes: table,
      meta,
    };
    return { graph, sequence: BigInt(sequence) };
  });

describe('encodeCanonicalGraphUpdated', () => {
  it('writes exactly the bytes of the generated encoder on the expanded tree', () => {
    fc.assert(
      fc.property(wireArb, ({ graph, sequence }) => {
        expect(Buffer.from(encodeCanonicalGraphUpdated(graph, sequence))).toEqual(
          Buffer.from(generatedEncoding(graph, sequence)),
        );
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips through the decoder', () => {
    fc.assert(
      fc.property(wireArb, ({ graph, sequence }) => {
        const view = decodeCanonicalGraphUpdated(encodeCanonicalGraphUpdated(graph, sequence));
        const { created_by, block_number, block_timestamp, cursor } = graph.meta;
        expect(view).toEqual({
          root_id: graph.root_id,
          sequence_number: sequence.toString(),
          canonical_space_ids: graph.canonical_space_ids,
          tree: expandedJson(graph.nodes),
          meta: { created_at: block_timestamp, block_number, cursor, ...(created_by ? { created_by } : {}) },
        });
      }),
      { numRuns: 200 },
    );
  });

  it.each([
    ['0', 0n],
    ['2^53+1', 2n ** 53n + 1n],
    ['2^64-1', U64_MAX],
  ])('keeps u64 value %s exact in sequence_number, created_at and block_number', (_, value) => {
    const graph = graphOf([[id(1), 'root', '', []]], {
      block_number: value.toString(),
      block_timestamp: value.toString(),
    });
    const encoded = encodeCanonicalGraphUpdated(graph, value);
    expect(Buffer.from(encoded)).toEqual(Buffer.from(generatedEncoding(graph, value)));
    const view = decodeCanonicalGraphUpdated(encoded);
    expect(view.sequence_number).toBe(value.toString());
    expect(view.meta.created_at).toBe(value.toString());
    expect(view.meta.block_number).toBe(value.toString());
  });

  it('takes a number sequence_number and rejects values off the u64 range', () => {
    const graph = graphOf([[id(1), 'root', '', []]]);
    expect(encodeCanonicalGraphUpdated(graph, 42)).toEqual(encodeCanonicalGraphUpdated(graph, 42n));
    expect(() => encodeCanonicalGraphUpdated(graph, 2 ** 53 + 2)).toThrow(RangeError);
    expect(() => encodeCanonicalGraphUpdated(graph, -1n)).toThrow(RangeError);
    expect(() => encodeCanonicalGraphUpdated(graph, 2n ** 64n)).toThrow(RangeError);
    for (const bad of ['18446744073709551616', '-1', '1e3', '0x10', '']) {
      expect(() =>
        encodeCanonicalGraphUpdated(graphOf([[id(1), 'root', '', []]], { block_number: bad }), 1),
      ).toThrow(RangeError);
    }
  });

  it('puts topic_id only on TOPIC edges', () => {
    const nodes: WireNode[] = [
      [id(3), 'topic', id(9), []],
      [id(2), 'verified', '', []],
      [id(4), 'related', '', [0]],
      [id(1), 'root', '', [1, 2, 0]],
    ];
    const encoded = encodeCanonicalGraphUpdated(graphOf(nodes), 1n);
    const raw = topology.CanonicalGraphUpdated.decode(encoded);
    const visit = (n: topology.CanonicalTreeNode.$Properties): void => {
      const isTopic = n.edgeType === topology.EdgeType.EDGE_TYPE_TOPIC;
      expect(n.topicId?.length ?? 0).toBe(isTopic ? 16 : 0);
      for (const c of n.children ?? []) visit(c);
    };
    visit(raw.tree!);
    expect(decodeCanonicalGraphUpdated(encoded).tree).toEqual(expandedJson(nodes));
  });

  it('rejects a topic on another edge and a topic edge without one', () => {
    expect(() => encodeCanonicalGraphUpdated(graphOf([[id(1), 'verified', id(9), []]]), 1)).toThrow(
      /topic_id/,
    );
    expect(() => encodeCanonicalGraphUpdated(graphOf([[id(1), 'topic', '', []]]), 1)).toThrow(/topic_id/);
  });

  it('leaves out an empty created_by', () => {
    for (const created_by of [undefined, '']) {
      const graph = graphOf([[id(1), 'root', '', []]], { created_by });
      const encoded = encodeCanonicalGraphUpdated(graph, 1n);
      expect(Buffer.from(encoded)).toEqual(Buffer.from(generatedEncoding(graph, 1n)));
      expect(topology.CanonicalGraphUpdated.decode(encoded).meta?.createdBy).toHaveLength(0);
      expect(decodeCanonicalGraphUpdated(encoded).meta).not.toHaveProperty('created_by');
    }
    const address = 'ab'.repeat(32);
    const encoded = encodeCanonicalGraphUpdated(
      graphOf([[id(1), 'root', '', []]], { created_by: address }),
      1n,
    );
    expect(decodeCanonicalGraphUpdated(encoded).meta.created_by).toBe(address);
  });

  it('rejects malformed ids and tables', () => {
    const root = (space: string): GraphWire => graphOf([[space, 'root', '', []]]);
    expect(() => encodeCanonicalGraphUpdated(root(id(1).toUpperCase().replace('0', 'A')), 1)).toThrow(/hex/);
    expect(() => encodeCanonicalGraphUpdated(root(id(1).slice(2)), 1)).toThrow(/32 hex/);
    expect(() =>
      encodeCanonicalGraphUpdated(graphOf([[id(1), 'root', '', []]], { created_by: 'ab' }), 1),
    ).toThrow(/created_by/);
    expect(() => encodeCanonicalGraphUpdated(graphOf([[id(1), 'root', '', [0]]]), 1)).toThrow(/child index/);
    expect(() => encodeCanonicalGraphUpdated({ ...root(id(1)), nodes: [] }, 1)).toThrow(/no nodes/);
  });

  it('refuses a tree whose expansion is past the 2 GiB message limit', () => {
    // Each level doubles the expanded tree: 40 distinct nodes, 2^40 expanded.
    const nodes: WireNode[] = [[id(1), 'verified', '', []]];
    for (let i = 1; i < 40; i++) nodes.push([id(1), 'verified', '', [i - 1, i - 1]]);
    expect(() => encodeCanonicalGraphUpdated(graphOf(nodes), 1)).toThrow(/2 GiB/);
  });

  it('handles trees deeper than protobufjs nests by default', () => {
    const chain = (depth: number): WireNode[] => {
      const nodes: WireNode[] = [[id(depth), 'verified', '', []]];
      for (let i = 1; i < depth; i++)
        nodes.push([id(depth - i), i === depth - 1 ? 'root' : 'verified', '', [i - 1]]);
      return nodes;
    };
    const shallowEnough = graphOf(chain(500));
    const view = decodeCanonicalGraphUpdated(encodeCanonicalGraphUpdated(shallowEnough, 1));
    expect(view.tree).toEqual(expandedJson(shallowEnough.nodes));
    // Encoding never recurses: a 100K-deep chain is fine, even where decoding would exhaust the stack.
    const deep = encodeCanonicalGraphUpdated(graphOf(chain(100_000)), 1);
    expect(deep.length).toBeGreaterThan(100_000 * 20);
  });

  it('encodes a shared subtree once per occurrence, each copy identical', () => {
    // One topic member subtree attached under many spaces: heavy sharing.
    const nodes: WireNode[] = [[id(100), 'verified', '', []]];
    nodes.push([id(101), 'topic', id(200), [0, 0, 0]]);
    for (let i = 0; i < 50; i++) nodes.push([id(i + 2), 'verified', '', [1, 1]]);
    nodes.push([id(1), 'root', '', nodes.slice(2).map((_, i) => i + 2)]);
    const graph = graphOf(nodes);
    expect(Buffer.from(encodeCanonicalGraphUpdated(graph, 9n))).toEqual(
      Buffer.from(generatedEncoding(graph, 9n)),
    );
  });
});
