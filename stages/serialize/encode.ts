/**
 * CanonicalGraphUpdated encoding whose cost follows the distinct subtrees of the wire table.
 *
 * A nested message's bytes do not depend on where it sits, so each distinct subtree is sized once
 * (children before parents, the order of the wire table) and written once; its later occurrences
 * copy the bytes of the first from the same output buffer. The output is laid out in one buffer
 * sized up front, so nothing is copied twice. The bytes equal protobufjs's generated encoder on
 * the expanded message (test/unit/serialize.test.ts), field by field in number order.
 */
import { topology } from '../../proto/gen/atlas.js';
import type { GraphWire, WireNode } from '../topology/graph-wire.ts';
import type { EdgeKind, EventMeta } from '../topology/tree.ts';

/** Protobuf's limit for one message (2 GiB - 1); an expanded tree can be far past it. */
const MAX_MESSAGE_BYTES = 2 ** 31 - 1;
const U64_MAX = 2n ** 64n - 1n;
const ID_BYTES = 16;
const ADDRESS_BYTES = 32;

// Tags are (field number << 3) | wire type; 2 = length-delimited, 0 = varint.
const GRAPH_ROOT_ID = 0x0a;
const GRAPH_TREE = 0x12;
const GRAPH_CANONICAL_SPACE_ID = 0x1a;
const GRAPH_SEQUENCE_NUMBER = 0x20;
const GRAPH_META = 0x2a;
const NODE_SPACE_ID = 0x0a;
const NODE_EDGE_TYPE = 0x10;
const NODE_TOPIC_ID = 0x1a;
const NODE_CHILD = 0x22;
const META_CREATED_AT = 0x08;
const META_CREATED_BY = 0x12;
const META_BLOCK_NUMBER = 0x18;
const META_CURSOR = 0x22;

const EDGE_TOPIC = topology.EdgeType.EDGE_TYPE_TOPIC;

const ID_FIELD = 2 + ID_BYTES;
const EDGE_FIELD = 2; // every edge type fits a one-byte varint

interface MetaFields {
  createdAt: bigint;
  createdBy: string;
  blockNumber: bigint;
  cursor: Uint8Array;
}

export function encodeCanonicalGraphUpdated(graph: GraphWire, sequenceNumber: number | bigint): Uint8Array {
  const { nodes } = graph;
  const root = nodes.length - 1;
  if (root < 0) throw new Error(`graph of root ${graph.root_id} has no nodes`);
  checkId(graph.root_id, ID_BYTES, 'root_id');
  for (const id of graph.canonical_space_ids) checkId(id, ID_BYTES, 'canonical_space_ids');
  const sequence = toU64(sequenceNumber, 'sequence_number');
  const meta = metaFields(graph.meta);
  const tree = layout(nodes, scratch(nodes.length));
  const metaSize = metaFieldsSize(meta);

  const total =
    ID_FIELD +
    tree.fieldSizes[root]! +
    graph.canonical_space_ids.length * ID_FIELD +
    (sequence === 0n ? 0 : 1 + varint64Size(sequence)) +
    delimitedSize(metaSize);
  if (total > MAX_MESSAGE_BYTES) throw tooLarge(`graph of root ${graph.root_id}`, total);

  // Unzeroed: every byte is written below.
  const out = Buffer.allocUnsafeSlow(total);
  let pos = writeId(out, 0, GRAPH_ROOT_ID, graph.root_id);
  out[pos++] = GRAPH_TREE;
  pos = writeVarint(out, pos, tree.sizes[root]!);
  pos = writeTree(out, pos, nodes, tree);
  for (const id of graph.canonical_space_ids) pos = writeId(out, pos, GRAPH_CANONICAL_SPACE_ID, id);
  if (sequence !== 0n) {
    out[pos++] = GRAPH_SEQUENCE_NUMBER;
    pos = writeVarint64(out, pos, sequence);
  }
  out[pos++] = GRAPH_META;
  pos = writeVarint(out, pos, metaSize);
  pos = writeMeta(out, pos, meta);
  if (pos !== total) throw new Error(`encoder wrote ${pos} bytes of ${total}`);
  return out;
}

/**
 * Fields 1, 4 and 5 of CanonicalGraphUpdated (root_id, sequence_number, meta), which
 * CanonicalGraphDiff shares: the start of a diff that carries no tree.
 */
export function encodeGraphEnvelope(
  rootId: string,
  sequenceNumber: number | bigint,
  eventMeta: EventMeta,
): Uint8Array {
  checkId(rootId, ID_BYTES, 'root_id');
  const sequence = toU64(sequenceNumber, 'sequence_number');
  const meta = metaFields(eventMeta);
  const metaSize = metaFieldsSize(meta);
  const total = ID_FIELD + (sequence === 0n ? 0 : 1 + varint64Size(sequence)) + delimitedSize(metaSize);
  const out = Buffer.allocUnsafeSlow(total);
  let pos = writeId(out, 0, GRAPH_ROOT_ID, rootId);
  if (sequence !== 0n) {
    out[pos++] = GRAPH_SEQUENCE_NUMBER;
    pos = writeVarint64(out, pos, sequence);
  }
  out[pos++] = GRAPH_META;
  pos = writeVarint(out, pos, metaSize);
  pos = writeMeta(out, pos, meta);
  if (pos !== total) throw new Error(`encoder wrote ${pos} bytes of ${total}`);
  return out;
}

/** Working arrays of one encoding, indexed by distinct node; longer than the table when reused. */
interface Scratch {
  edgeTypes: Uint8Array;
  /** Encoded size of each distinct subtree (the CanonicalTreeNode message). */
  sizes: Float64Array;
  /** The same as a child field: tag, length and message. */
  fieldSizes: Float64Array;
  /** Where the field of a distinct subtree was first written, -1 before. */
  fieldAt: Float64Array;
  stackNode: Int32Array;
  stackNext: Int32Array;
}

/**
 * Encoding is synchronous, so one set of working arrays serves every call: allocating them took a
 * third of the time for small trees. Larger tables get their own, so as not to pin their memory.
 */
const SHARED_SCRATCH_NODES = 1 << 16;
let shared: Scratch = newScratch(1024);

function scratch(nodes: number): Scratch {
  if (nodes > SHARED_SCRATCH_NODES) return newScratch(nodes);
  if (nodes > shared.sizes.length) shared = newScratch(Math.min(SHARED_SCRATCH_NODES, 2 * nodes));
  return shared;
}

function newScratch(nodes: number): Scratch {
  return {
    edgeTypes: new Uint8Array(nodes),
    sizes: new Float64Array(nodes),
    fieldSizes: new Float64Array(nodes),
    fieldAt: new Float64Array(nodes),
    stackNode: new Int32Array(nodes),
    stackNext: new Int32Array(nodes),
  };
}

/** Sizes every distinct subtree once, children first; checks the table on the way. */
function layout(nodes: readonly WireNode[], tree: Scratch): Scratch {
  const { edgeTypes, sizes, fieldSizes } = tree;
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i]!;
    const children = node[3];
    edgeTypes[i] = edgeType(node[1], i);
    let size = headSize(node, edgeTypes[i]!, i);
    for (const c of children) {
      if (!(c < i && c >= 0 && Number.isInteger(c))) {
        throw new Error(`tree node ${i}: child index ${c} does not come before it`);
      }
      size += fieldSizes[c]!;
    }
    if (size > MAX_MESSAGE_BYTES) throw tooLarge(`tree node ${i}`, size);
    sizes[i] = size;
    fieldSizes[i] = delimitedSize(size);
  }
  return tree;
}

function edgeType(edge: EdgeKind, at: number): number {
  switch (edge) {
    case 'root':
      return topology.EdgeType.EDGE_TYPE_ROOT;
    case 'verified':
      return topology.EdgeType.EDGE_TYPE_VERIFIED;
    case 'related':
      return topology.EdgeType.EDGE_TYPE_RELATED;
    case 'topic':
      return EDGE_TOPIC;
    default:
      throw new Error(`tree node ${at}: unknown edge ${JSON.stringify(edge)}`);
  }
}

function headSize(node: WireNode, edge: number, at: number): number {
  if (node[0].length !== ID_BYTES * 2) throw badId(node[0], ID_BYTES, `tree node ${at} space_id`);
  if (edge === EDGE_TOPIC) {
    if (node[2].length !== ID_BYTES * 2) throw badId(node[2], ID_BYTES, `tree node ${at} topic_id`);
    return ID_FIELD + EDGE_FIELD + ID_FIELD;
  }
  if (node[2] !== '') throw new Error(`tree node ${at}: topic_id on a ${node[1]} edge`);
  return ID_FIELD + EDGE_FIELD;
}

/**
 * Writes the expanded tree depth-first, walking each distinct subtree only at its first
 * occurrence. A subtree met again was written completely before (it cannot be its own ancestor),
 * so its field is copied from there; consecutive children whose fields already lie back to back
 * (the same topic members attached under many spaces) are copied as one run.
 */
function writeTree(
  out: Uint8Array,
  start: number,
  nodes: readonly WireNode[],
  { edgeTypes, sizes, fieldSizes, fieldAt, stackNode, stackNext }: Scratch,
): number {
  fieldAt.fill(-1, 0, nodes.length);
  // A path never repeats a distinct node, so the stacks never outgrow the table.
  const root = nodes.length - 1;
  let pos = writeHead(out, start, nodes[root]!, edgeTypes[root]!);
  stackNode[0] = root;
  stackNext[0] = 0;
  let depth = 1;
  let runFrom = 0;
  let runSize = 0;
  while (depth > 0) {
    const top = depth - 1;
    const child = nodes[stackNode[top]!]![3][stackNext[top]!++];
    const at = child === undefined ? -1 : fieldAt[child]!;
    if (at >= 0) {
      if (at !== runFrom + runSize) {
        pos = copy(out, pos, runFrom, runSize);
        runFrom = at;
        runSize = 0;
      }
      runSize += fieldSizes[child!]!;
      continue;
    }
    pos = copy(out, pos, runFrom, runSize);
    runSize = 0;
    if (child === undefined) {
      depth--;
      continue;
    }
    fieldAt[child] = pos;
    out[pos++] = NODE_CHILD;
    pos = writeVarint(out, pos, sizes[child]!);
    pos = writeHead(out, pos, nodes[child]!, edgeTypes[child]!);
    stackNode[depth] = child;
    stackNext[depth] = 0;
    depth++;
  }
  return pos;
}

function writeHead(out: Uint8Array, pos: number, node: WireNode, edge: number): number {
  pos = writeId(out, pos, NODE_SPACE_ID, node[0]);
  out[pos++] = NODE_EDGE_TYPE;
  out[pos++] = edge;
  return edge === EDGE_TOPIC ? writeId(out, pos, NODE_TOPIC_ID, node[2]) : pos;
}

/** Copies bytes written earlier in `out` to `pos`; returns the position after them. */
function copy(out: Uint8Array, pos: number, from: number, size: number): number {
  if (size > 0) out.copyWithin(pos, from, from + size);
  return pos + size;
}

function metaFields(meta: EventMeta): MetaFields {
  const createdBy = meta.created_by ?? '';
  if (createdBy !== '') checkId(createdBy, ADDRESS_BYTES, 'meta.created_by');
  return {
    createdAt: toU64(meta.block_timestamp, 'meta.block_timestamp'),
    createdBy,
    blockNumber: toU64(meta.block_number, 'meta.block_number'),
    cursor: Buffer.from(meta.cursor, 'utf8'),
  };
}

// Proto3 leaves out fields that hold their default value; the generated encoder does the same.
function metaFieldsSize(meta: MetaFields): number {
  return (
    (meta.createdAt === 0n ? 0 : 1 + varint64Size(meta.createdAt)) +
    (meta.createdBy === '' ? 0 : 2 + ADDRESS_BYTES) +
    (meta.blockNumber === 0n ? 0 : 1 + varint64Size(meta.blockNumber)) +
    (meta.cursor.length === 0 ? 0 : delimitedSize(meta.cursor.length))
  );
}

function writeMeta(out: Uint8Array, pos: number, meta: MetaFields): number {
  if (meta.createdAt !== 0n) {
    out[pos++] = META_CREATED_AT;
    pos = writeVarint64(out, pos, meta.createdAt);
  }
  if (meta.createdBy !== '') pos = writeId(out, pos, META_CREATED_BY, meta.createdBy);
  if (meta.blockNumber !== 0n) {
    out[pos++] = META_BLOCK_NUMBER;
    pos = writeVarint64(out, pos, meta.blockNumber);
  }
  if (meta.cursor.length > 0) {
    out[pos++] = META_CURSOR;
    pos = writeVarint(out, pos, meta.cursor.length);
    out.set(meta.cursor, pos);
    pos += meta.cursor.length;
  }
  return pos;
}

/** A length-delimited field with a one-byte tag. */
function delimitedSize(length: number): number {
  return 1 + varintSize(length) + length;
}

function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

function varint64Size(value: bigint): number {
  let size = 1;
  for (let v = value >> 7n; v > 0n; v >>= 7n) size++;
  return size;
}

/** Lengths only: at most MAX_MESSAGE_BYTES, so 32-bit shifts are exact. */
function writeVarint(out: Uint8Array, pos: number, value: number): number {
  let v = value >>> 0;
  while (v > 0x7f) {
    out[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[pos++] = v;
  return pos;
}

function writeVarint64(out: Uint8Array, pos: number, value: bigint): number {
  let v = value;
  while (v > 0x7fn) {
    out[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  out[pos++] = Number(v);
  return pos;
}

function toU64(value: string | number | bigint, what: string): bigint {
  let n: bigint;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`${what}: ${value} is not an exact integer`);
    n = BigInt(value);
  } else {
    if (!/^[0-9]{1,20}$/.test(value)) throw new RangeError(`${what}: ${JSON.stringify(value)} is not a u64`);
    n = BigInt(value);
  }
  if (n < 0n || n > U64_MAX) throw new RangeError(`${what}: ${value} is out of the u64 range`);
  return n;
}

/** Value of each ASCII hex digit; anything else has bits above the low byte set. */
const HEX_DIGIT = new Int32Array(128).fill(-256);
for (let d = 0; d < 16; d++) HEX_DIGIT['0123456789abcdef'.charCodeAt(d)] = d;

function checkId(hex: string, bytes: number, what: string): void {
  if (hex.length !== bytes * 2) throw badId(hex, bytes, what);
}

function badId(hex: string, bytes: number, what: string): Error {
  return new Error(`${what}: expected ${bytes * 2} hex chars, got ${JSON.stringify(hex)}`);
}

/**
 * A length-delimited id field. The digits are checked once at the end, not per byte: the ids are
 * the hot loop of the encoder.
 */
function writeId(out: Uint8Array, pos: number, tag: number, hex: string): number {
  out[pos++] = tag;
  out[pos++] = hex.length >>> 1;
  let chars = 0;
  let values = 0;
  for (let i = 0; i < hex.length; i += 2) {
    const high = hex.charCodeAt(i);
    const low = hex.charCodeAt(i + 1);
    const byte = (HEX_DIGIT[high & 0x7f]! << 4) | HEX_DIGIT[low & 0x7f]!;
    chars |= high | low;
    values |= byte;
    out[pos++] = byte;
  }
  if (chars > 0x7f || values < 0) throw new Error(`not a lowercase hex id: ${JSON.stringify(hex)}`);
  return pos;
}

function tooLarge(what: string, size: number): RangeError {
  return new RangeError(`${what}: ${size} bytes encoded, over protobuf's 2 GiB message limit`);
}
