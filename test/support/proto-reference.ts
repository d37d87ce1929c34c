/**
 * The reference for our encoder: the expanded CanonicalGraphUpdated built as plain objects for
 * protobufjs's generated code (shared subtrees are shared objects, walked once per occurrence).
 * The serialize tests compare bytes with it; the serialize bench times it as the baseline.
 */
import type protobuf from 'protobufjs/minimal.js';
import { topology } from '../../proto/gen/atlas.js';
import type { GraphWire } from '../../stages/topology/graph-wire.ts';
import type { EdgeKind } from '../../stages/topology/tree.ts';

const EDGE_TYPES: Record<EdgeKind, topology.EdgeType> = {
  root: topology.EdgeType.EDGE_TYPE_ROOT,
  verified: topology.EdgeType.EDGE_TYPE_VERIFIED,
  related: topology.EdgeType.EDGE_TYPE_RELATED,
  topic: topology.EdgeType.EDGE_TYPE_TOPIC,
};

const bytes = (hex: string): Uint8Array => Buffer.from(hex, 'hex');

function long(decimal: string): protobuf.Long {
  const v = BigInt(decimal);
  return { low: Number(v & 0xffffffffn) | 0, high: Number(v >> 32n) | 0, unsigned: true };
}

export function expandedMessage(graph: GraphWire, sequenceNumber: bigint): topology.CanonicalGraphUpdated {
  const built: topology.CanonicalTreeNode.$Properties[] = [];
  for (const [space, edge, topic, children] of graph.nodes) {
    built.push({
      spaceId: bytes(space),
      edgeType: EDGE_TYPES[edge],
      topicId: bytes(topic),
      children: children.map((i) => built[i]!),
    });
  }
  return topology.CanonicalGraphUpdated.create({
    rootId: bytes(graph.root_id),
    tree: built[built.length - 1]!,
    canonicalSpaceIds: graph.canonical_space_ids.map(bytes),
    sequenceNumber: long(sequenceNumber.toString()),
    meta: {
      createdAt: long(graph.meta.block_timestamp),
      createdBy: bytes(graph.meta.created_by ?? ''),
      blockNumber: long(graph.meta.block_number),
      cursor: graph.meta.cursor,
    },
  });
}

/** The expanded message, encoded by the generated encoder. */
export function generatedEncoding(graph: GraphWire, sequenceNumber: bigint): Uint8Array {
  return topology.CanonicalGraphUpdated.encode(expandedMessage(graph, sequenceNumber)).finish();
}
