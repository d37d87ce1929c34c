/**
 * Decodes CanonicalGraphUpdated with the generated code into a plain, JSON-ready view: lowercase
 * hex ids, u64 values as decimal strings, the tree expanded in the `--json` shape.
 */
import protobuf from 'protobufjs/minimal.js';
import { topology } from '../../proto/gen/atlas.js';
import type { JsonTreeNode } from '../topology/graph-wire.ts';
import type { EdgeKind } from '../topology/tree.ts';

export interface CanonicalGraphUpdatedView {
  root_id: string;
  sequence_number: string;
  canonical_space_ids: string[];
  tree: JsonTreeNode;
  meta: { created_at: string; created_by?: string; block_number: string; cursor: string };
}

type TreeMessage = topology.CanonicalTreeNode.$Properties;
type U64 = number | protobuf.Long;

/**
 * protobufjs stops at 100 nested messages (protoc's default), and a canonical tree is legitimately
 * deeper than that; the generated decoder recurses, so the JS stack (a few thousand levels) is the
 * real bound and fails with a RangeError past it.
 */
const NESTING_LIMIT = 1_000_000;

const EDGE_KINDS = new Map<number, EdgeKind>([
  [topology.EdgeType.EDGE_TYPE_ROOT, 'root'],
  [topology.EdgeType.EDGE_TYPE_VERIFIED, 'verified'],
  [topology.EdgeType.EDGE_TYPE_RELATED, 'related'],
  [topology.EdgeType.EDGE_TYPE_TOPIC, 'topic'],
]);

export function decodeCanonicalGraphUpdated(bytes: Uint8Array): CanonicalGraphUpdatedView {
  const message = decodeDeep(bytes);
  if (!message.tree) throw new Error('CanonicalGraphUpdated without a tree');
  const meta = message.meta ?? {};
  const createdBy = hex(meta.createdBy);
  return {
    root_id: hex(message.rootId),
    sequence_number: u64(message.sequenceNumber),
    canonical_space_ids: message.canonicalSpaceIds.map(hex),
    tree: treeView(message.tree),
    meta: {
      created_at: u64(meta.createdAt),
      ...(createdBy === '' ? {} : { created_by: createdBy }),
      block_number: u64(meta.blockNumber),
      cursor: meta.cursor ?? '',
    },
  };
}

function decodeDeep(bytes: Uint8Array): topology.CanonicalGraphUpdated {
  const limit = protobuf.Reader.recursionLimit;
  protobuf.Reader.recursionLimit = NESTING_LIMIT;
  try {
    return topology.CanonicalGraphUpdated.decode(bytes);
  } finally {
    protobuf.Reader.recursionLimit = limit;
  }
}

/** Iterative: the decoded tree can be deeper than a recursive walk could go. */
function treeView(root: TreeMessage): JsonTreeNode {
  const top = nodeView(root);
  const stack: Array<[TreeMessage, JsonTreeNode]> = [[root, top]];
  for (let entry = stack.pop(); entry; entry = stack.pop()) {
    const [node, view] = entry;
    for (const child of node.children ?? []) {
      const childView = nodeView(child);
      view.children.push(childView);
      stack.push([child, childView]);
    }
  }
  return top;
}

function nodeView(node: TreeMessage): JsonTreeNode {
  const edge = EDGE_KINDS.get(node.edgeType ?? 0);
  if (!edge) throw new Error(`tree node with edge type ${node.edgeType ?? 0}`);
  const space_id = hex(node.spaceId);
  const topic_id = hex(node.topicId);
  // A topic id on another edge breaks the contract: show it rather than hide it.
  if (edge !== 'topic' && topic_id === '') return { space_id, edge, children: [] };
  return { space_id, edge, topic_id, children: [] };
}

function hex(bytes: Uint8Array | null | undefined): string {
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex') : '';
}

function u64(value: U64 | null | undefined): string {
  if (value == null) return '0';
  if (typeof value === 'number') return String(value);
  return ((BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0)).toString();
}
