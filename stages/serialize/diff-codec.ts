/**
 * CanonicalGraphDiff on the wire. Fields 1, 4 and 5 are written as CanonicalGraphUpdated writes
 * them, and a diff that carries the tree starts with the whole CanonicalGraphUpdated: protobuf
 * merges concatenated messages, so such a diff is also a snapshot to any reader.
 */
import protobuf from 'protobufjs/minimal.js';
import { topology } from '../../proto/gen/atlas.js';
import type { GraphWire } from '../topology/graph-wire.ts';
import type { EdgeKind } from '../topology/tree.ts';
import { type CanonicalGraphUpdatedView, decodeCanonicalGraphUpdated } from './decode.ts';
import { encodeCanonicalGraphUpdated, encodeGraphEnvelope } from './encode.ts';
import type { Attachment, ChangeType, GraphDiff, NodeChange } from './graph-diff.ts';

export const SNAPSHOT_MESSAGE = 'topology.CanonicalGraphUpdated';
export const DIFF_MESSAGE = 'topology.CanonicalGraphDiff';

const CHANGE_TYPES: Record<ChangeType, topology.NodeChangeType> = {
  added: topology.NodeChangeType.NODE_CHANGE_TYPE_ADDED,
  removed: topology.NodeChangeType.NODE_CHANGE_TYPE_REMOVED,
  moved: topology.NodeChangeType.NODE_CHANGE_TYPE_MOVED,
};
const EDGE_TYPES: Record<EdgeKind, topology.EdgeType> = {
  root: topology.EdgeType.EDGE_TYPE_ROOT,
  verified: topology.EdgeType.EDGE_TYPE_VERIFIED,
  related: topology.EdgeType.EDGE_TYPE_RELATED,
  topic: topology.EdgeType.EDGE_TYPE_TOPIC,
};

export interface DiffHeader {
  sequenceNumber: bigint;
  /** Merkle hash of the resulting tree, 32 hex chars. */
  treeHash: string;
  /** Also write the whole resulting tree (a snapshot a consumer verifies against). */
  withTree: boolean;
}

export function encodeCanonicalGraphDiff(graph: GraphWire, diff: GraphDiff, header: DiffHeader): Uint8Array {
  const { sequenceNumber } = header;
  if (sequenceNumber < 2n || sequenceNumber > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`a diff needs a base: sequence_number ${sequenceNumber}`);
  }
  const head = header.withTree
    ? encodeCanonicalGraphUpdated(graph, sequenceNumber)
    : encodeGraphEnvelope(graph.root_id, sequenceNumber, graph.meta);
  const rest = topology.CanonicalGraphDiff.encode({
    baseSequenceNumber: Number(sequenceNumber - 1n),
    changes: diff.changes.map(changeMessage),
    attachmentsRemoved: diff.attachmentsRemoved.map(attachmentMessage),
    attachmentsAdded: diff.attachmentsAdded.map(attachmentMessage),
    treeHash: idBytes(header.treeHash),
  }).finish();
  return Buffer.concat([head, rest]);
}

function changeMessage(c: NodeChange): topology.NodeChange.$Properties {
  const message: topology.NodeChange.$Properties = {
    type: CHANGE_TYPES[c.type],
    spaceId: idBytes(c.space),
    memberSpaceId: idBytes(c.member),
  };
  if (c.place) {
    message.parentSpaceId = idBytes(c.place.parent);
    message.edgeType = EDGE_TYPES[c.place.edge];
    message.topicId = idBytes(c.place.topic);
    message.distance = c.place.distance;
  }
  return message;
}

function attachmentMessage(a: Attachment): topology.Attachment.$Properties {
  return { anchorSpaceId: idBytes(a.anchor), topicId: idBytes(a.topic), memberSpaceId: idBytes(a.member) };
}

function idBytes(hex: string): Uint8Array {
  if (!/^([0-9a-f]{32})?$/.test(hex)) throw new Error(`not a 16-byte id: ${JSON.stringify(hex)}`);
  return Buffer.from(hex, 'hex');
}

export interface CanonicalGraphDiffView {
  rootId: string;
  sequenceNumber: bigint;
  baseSequenceNumber: bigint;
  diff: GraphDiff;
  treeHash: string;
  /** The resulting graph when the diff carries it. */
  snapshot: CanonicalGraphUpdatedView | null;
  meta: CanonicalGraphUpdatedView['meta'];
}

const CHANGE_NAMES = new Map<number, ChangeType>(
  Object.entries(CHANGE_TYPES).map(([name, value]) => [value, name as ChangeType]),
);
const EDGE_NAMES = new Map<number, EdgeKind>(
  Object.entries(EDGE_TYPES).map(([name, value]) => [value, name as EdgeKind]),
);

export function decodeCanonicalGraphDiff(bytes: Uint8Array): CanonicalGraphDiffView {
  const message = topology.CanonicalGraphDiff.decode(withoutTree(bytes));
  const snapshot = message.tree ? decodeCanonicalGraphUpdated(bytes) : null;
  return {
    rootId: hex(message.rootId),
    sequenceNumber: u64(message.sequenceNumber),
    baseSequenceNumber: u64(message.baseSequenceNumber),
    diff: {
      changes: message.changes.map(changeOf),
      attachmentsRemoved: message.attachmentsRemoved.map(attachmentOf),
      attachmentsAdded: message.attachmentsAdded.map(attachmentOf),
    },
    treeHash: hex(message.treeHash),
    snapshot,
    meta: readMeta(bytes),
  };
}

/**
 * The diff fields without decoding a tree: the tree is nested (deep trees pass protobufjs's
 * recursion limit) and decodeCanonicalGraphUpdated reads it when there is one.
 */
function withoutTree(bytes: Uint8Array): Uint8Array {
  const reader = protobuf.Reader.create(bytes);
  const kept: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    reader.skipType(tag & 7);
    if (tag >>> 3 !== 2) kept.push(bytes.subarray(start, reader.pos));
    else kept.push(Buffer.from([0x12, 0x00])); // present but empty: the view says it was there
  }
  return Buffer.concat(kept);
}

function readMeta(bytes: Uint8Array): CanonicalGraphUpdatedView['meta'] {
  const m = topology.CanonicalGraphDiff.decode(withoutTree(bytes)).meta ?? {};
  const createdBy = hex(m.createdBy);
  return {
    created_at: u64(m.createdAt).toString(),
    ...(createdBy === '' ? {} : { created_by: createdBy }),
    block_number: u64(m.blockNumber).toString(),
    cursor: m.cursor ?? '',
  };
}

/** Root, sequence number and meta: the fields every message of the topic has (fields 1, 4, 5). */
export function decodeEnvelope(bytes: Uint8Array): {
  rootId: string;
  sequenceNumber: bigint;
  meta: CanonicalGraphUpdatedView['meta'];
} {
  const message = topology.CanonicalGraphDiff.decode(withoutTree(bytes));
  return { rootId: hex(message.rootId), sequenceNumber: u64(message.sequenceNumber), meta: readMeta(bytes) };
}

function changeOf(c: topology.NodeChange.$Properties): NodeChange {
  const type = CHANGE_NAMES.get(c.type ?? 0);
  if (!type) throw new Error(`node change of type ${c.type}`);
  const change: NodeChange = {
    type,
    space: hex(c.spaceId),
    member: hex(c.memberSpaceId),
  };
  if (type === 'removed') return change;
  const edge = EDGE_NAMES.get(c.edgeType ?? 0);
  if (!edge) throw new Error(`node change with edge type ${c.edgeType}`);
  change.place = { parent: hex(c.parentSpaceId), edge, topic: hex(c.topicId), distance: c.distance ?? 0 };
  return change;
}

function attachmentOf(a: topology.Attachment.$Properties): Attachment {
  return { anchor: hex(a.anchorSpaceId), topic: hex(a.topicId), member: hex(a.memberSpaceId) };
}

function hex(bytes: Uint8Array | null | undefined): string {
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex') : '';
}

function u64(value: number | protobuf.Long | null | undefined): bigint {
  if (value == null) return 0n;
  if (typeof value === 'number') return BigInt(value);
  return (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
}
