/**
 * The Kafka side of the end-to-end tests: the real broker (ATLAS_TEST_KAFKA_BROKER, default
 * 127.0.0.1:9092), a topic per test (made with `atlas kafka init`, deleted afterwards), reading a
 * topic back in full, and decoding each message twice — with the contract files
 * (proto/topology.proto loaded by protobufjs at test time: the .proto files must decode the bytes)
 * and with the project's own decoder (stages/serialize/decode.ts) — into one plain shape that
 * compares directly with the fixtures' expected graphs.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import kafkajs, { type Admin, type Kafka, type KafkaMessage } from 'kafkajs';
import protobuf from 'protobufjs';
import { ensureTopic } from '../../stages/emit/kafka-sink.ts';
import { prepareKafkajs } from '../../stages/emit/kafkajs-node24.ts';
import { readRanges } from '../../stages/emit/read-back.ts';
import { decodeCanonicalGraphUpdated } from '../../stages/serialize/decode.ts';
import type { JsonTreeNode } from '../../stages/topology/graph-wire.ts';
import { delay } from './eventually.ts';
import type { PlainNode } from './graph-scenario.ts';
import { ROOT, runAtlas } from './processes.ts';

export const KAFKA_BROKER = process.env.ATLAS_TEST_KAFKA_BROKER ?? '127.0.0.1:9092';

export const HEADERS = {
  'content-type': 'application/x-protobuf',
  'message-name': 'topology.CanonicalGraphUpdated',
  'schema-version': '1',
} as const;

export const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

/** A kafkajs client of the test process, with the project's zstd codec registered. */
export function kafkaClient(tag = 'e2e', broker = KAFKA_BROKER): Kafka {
  prepareKafkajs(); // the zstd codec (stages/emit/zstd-codec.ts installZstd) and kafkajs#1751's warning silenced
  return new kafkajs.Kafka({
    clientId: `atlas-${tag}-${randomUUID().slice(0, 8)}`,
    brokers: broker.split(','),
    logLevel: kafkajs.logLevel.NOTHING,
  });
}

/** A topic name no other test uses. */
export function uniqueTopic(tag: string): string {
  return `atlas-e2e-${tag}-${randomUUID().slice(0, 8)}`;
}

/** Creates the output topic the way an operator does: `atlas kafka init`. */
export async function kafkaInit(topic: string, broker = KAFKA_BROKER): Promise<void> {
  const { code, stdout, stderr } = await runAtlas(
    ['kafka', 'init'],
    { KAFKA_BROKER: broker, KAFKA_TOPIC_CANONICAL: topic, LOG_LEVEL: 'warn' },
    60_000,
  );
  if (code !== 0 || !stdout.includes(`${topic}: created`))
    throw new Error(`atlas kafka init exited ${code}: ${stdout}\n${stderr}`);
}

/** Creates a topic directly (ensureTopic, the code behind `atlas kafka init`). */
export async function createTopic(topic: string, partitions = 3, broker = KAFKA_BROKER): Promise<void> {
  await withAdmin(async (admin) => {
    await ensureTopic(admin, { topic, partitions });
  }, broker);
}

/** Deletes topics that exist; retried for a while (a broker just restarted may refuse at first). */
export async function deleteTopics(topics: string[], broker = KAFKA_BROKER): Promise<void> {
  if (topics.length === 0) return;
  for (let attempt = 0; ; attempt++) {
    try {
      await withAdmin(async (admin) => {
        const existing = new Set(await admin.listTopics());
        const gone = topics.filter((t) => existing.has(t));
        if (gone.length > 0) await admin.deleteTopics({ topics: gone, timeout: 10_000 });
      }, broker);
      return;
    } catch (err) {
      if (attempt >= 10) throw err;
      await delay(1000);
    }
  }
}

export async function withAdmin<T>(fn: (admin: Admin) => Promise<T>, broker = KAFKA_BROKER): Promise<T> {
  const admin = kafkaClient('e2e-admin', broker).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Committed messages in the topic now. Not high - low watermarks: the emit stage writes in
 * transactions, and each transaction marker takes an offset too.
 */
export async function topicCount(topic: string, broker = KAFKA_BROKER): Promise<number> {
  return (await readTopic(topic, 60_000, broker)).length;
}

/**
 * Counts the topic's committed messages as they arrive, with one consumer kept running, for
 * polling loops: count() lags the topic by a fetch (tens of ms), and starts once the consumer
 * has joined its group.
 */
export async function topicCounter(
  topic: string,
  broker = KAFKA_BROKER,
): Promise<{ count(): Promise<number>; close(): Promise<void> }> {
  const kafka = kafkaClient('e2e-count', broker);
  const groupId = `atlas-e2e-count-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 20 });
  let seen = 0;
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      seen += batch.messages.length;
    },
  });
  return {
    count: async () => seen,
    close: async () => {
      await consumer.disconnect();
      await withAdmin((admin) => admin.deleteGroups([groupId]), broker).catch(() => undefined);
    },
  };
}

export interface TopicMessage {
  partition: number;
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

function toTopicMessage(partition: number, m: KafkaMessage): TopicMessage {
  const headers: Record<string, string> = {};
  for (const [name, raw] of Object.entries(m.headers ?? {})) {
    const v = Array.isArray(raw) ? raw.at(-1) : raw;
    if (v !== undefined) headers[name] = v.toString();
  }
  return { partition, offset: BigInt(m.offset), key: m.key, value: m.value, headers };
}

/**
 * Every committed message of the topic up to the high watermarks at the call, in (partition,
 * offset) order: the emit stage's bounded read (read committed, a throwaway consumer group).
 */
export async function readTopic(
  topic: string,
  timeoutMs = 60_000,
  broker = KAFKA_BROKER,
): Promise<TopicMessage[]> {
  const kafka = kafkaClient('e2e-read', broker);
  const admin = kafka.admin();
  await admin.connect();
  const out: TopicMessage[] = [];
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    const ends = new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
    const ranges = offsets.map((o) => ({
      partition: o.partition,
      start: BigInt(o.low),
      end: BigInt(o.high),
    }));
    const each = (partition: number, m: KafkaMessage) => {
      if (BigInt(m.offset) < (ends.get(partition) ?? 0n)) out.push(toTopicMessage(partition, m));
    };
    await readRanges({ kafka, admin, clientId: 'atlas-e2e', topic, ranges, stallMs: timeoutMs }, each);
  } finally {
    await admin.disconnect();
  }
  return out.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));
}

/**
 * Waits until the topic holds `n` messages (failing at once when it holds more), then checks that
 * no more arrive for `quietMs`.
 */
export async function waitForCount(
  topic: string,
  n: number,
  timeoutMs = 60_000,
  quietMs = 1500,
  broker = KAFKA_BROKER,
): Promise<void> {
  const counter = await topicCounter(topic, broker);
  try {
    const deadline = Date.now() + timeoutMs;
    for (let count = await counter.count(); count !== n; count = await counter.count()) {
      if (count > n) throw new Error(`${topic} holds ${count} messages, more than the ${n} expected`);
      if (Date.now() > deadline)
        throw new Error(`${topic} holds ${count} of ${n} messages after ${timeoutMs} ms`);
      await delay(200);
    }
    const quietUntil = Date.now() + quietMs;
    while (Date.now() < quietUntil) {
      await delay(250);
      const count = await counter.count();
      if (count !== n) throw new Error(`${topic}: ${count} messages after it held ${n}`);
    }
  } finally {
    await counter.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** CanonicalGraphUpdated in the fixtures' shape (ids as lowercase hex, u64 as decimal strings). */
export interface DecodedUpdate {
  root_id: string;
  sequence_number: string;
  canonical_space_ids: string[];
  tree: PlainNode;
  meta: { created_at: string; created_by: string; block_number: string; cursor: string };
}

const EDGES: Record<string, string> = {
  EDGE_TYPE_ROOT: 'root',
  EDGE_TYPE_VERIFIED: 'verified',
  EDGE_TYPE_RELATED: 'related',
  EDGE_TYPE_TOPIC: 'topic',
};

let contract: protobuf.Type | undefined;

/** `topology.CanonicalGraphUpdated` from proto/topology.proto (and the file it imports). */
export async function contractType(): Promise<protobuf.Type> {
  contract ??= (await protobuf.load(join(ROOT, 'proto', 'topology.proto'))).lookupType(
    'topology.CanonicalGraphUpdated',
  );
  return contract;
}

const hex = (b: Uint8Array | undefined | null): string => (b ? Buffer.from(b).toString('hex') : '');

interface ContractNode {
  spaceId: Uint8Array;
  edgeType: string;
  topicId: Uint8Array;
  children: ContractNode[];
}

/** Decoded by the contract files alone (protobufjs reflection on the .proto text). */
export async function decodeWithContract(bytes: Uint8Array): Promise<DecodedUpdate> {
  const type = await contractType();
  const o = type.toObject(type.decode(bytes), { longs: String, enums: String, defaults: true }) as {
    rootId: Uint8Array;
    tree: ContractNode | null;
    canonicalSpaceIds: Uint8Array[];
    sequenceNumber: string;
    meta: { createdAt: string; createdBy: Uint8Array; blockNumber: string; cursor: string } | null;
  };
  if (!o.tree) throw new Error('CanonicalGraphUpdated without a tree');
  const node = (n: ContractNode): PlainNode => {
    const edge = EDGES[n.edgeType];
    if (!edge) throw new Error(`edge type ${n.edgeType}`);
    const topic = hex(n.topicId);
    if (edge !== 'topic' && topic !== '') throw new Error(`topic_id ${topic} on a ${edge} edge`);
    if (edge === 'topic' && topic.length !== 32) throw new Error(`topic edge with topic_id "${topic}"`);
    if (hex(n.spaceId).length !== 32) throw new Error(`space_id "${hex(n.spaceId)}" is not 16 bytes`);
    return {
      space_id: hex(n.spaceId),
      edge: edge as PlainNode['edge'],
      topic_id: edge === 'topic' ? topic : null,
      children: n.children.map(node),
    };
  };
  return {
    root_id: hex(o.rootId),
    sequence_number: o.sequenceNumber,
    canonical_space_ids: o.canonicalSpaceIds.map(hex),
    tree: node(o.tree),
    meta: {
      created_at: o.meta?.createdAt ?? '0',
      created_by: hex(o.meta?.createdBy),
      block_number: o.meta?.blockNumber ?? '0',
      cursor: o.meta?.cursor ?? '',
    },
  };
}

function plain(node: JsonTreeNode): PlainNode {
  return {
    space_id: node.space_id,
    edge: node.edge,
    topic_id: node.topic_id ?? null,
    children: node.children.map(plain),
  };
}

/** Decoded by the project's decoder (generated static code), in the same shape. */
export function decodeWithStage(bytes: Uint8Array): DecodedUpdate {
  const v = decodeCanonicalGraphUpdated(bytes);
  return {
    root_id: v.root_id,
    sequence_number: v.sequence_number,
    canonical_space_ids: v.canonical_space_ids,
    tree: plain(v.tree),
    meta: {
      created_at: v.meta.created_at,
      created_by: v.meta.created_by ?? '',
      block_number: v.meta.block_number,
      cursor: v.meta.cursor,
    },
  };
}

export interface RootStream {
  /** In partition order (= publication order). */
  updates: DecodedUpdate[];
  messages: TopicMessage[];
}

/**
 * Checks what every message must satisfy and groups the decoded updates per root: key = the
 * root's raw 16 bytes, all of a root's messages in one partition, headers present and right
 * (sequence-number header = the body's), both decoders agree. Throws with the first violation.
 */
export async function decodeTopic(messages: TopicMessage[]): Promise<Map<string, RootStream>> {
  const out = new Map<string, RootStream>();
  const partitionOf = new Map<string, number>();
  for (const m of messages) {
    const where = `partition ${m.partition} offset ${m.offset}`;
    if (!m.value) throw new Error(`${where}: no value`);
    const fromContract = await decodeWithContract(m.value);
    const fromStage = decodeWithStage(m.value);
    if (JSON.stringify(fromContract) !== JSON.stringify(fromStage))
      throw new Error(
        `${where}: the .proto files and decode.ts disagree:\n${JSON.stringify(fromContract)}\n${JSON.stringify(fromStage)}`,
      );
    const root = fromContract.root_id;
    if (m.key?.length !== 16 || m.key.toString('hex') !== root)
      throw new Error(`${where}: key ${m.key?.toString('hex')} is not root ${root} as 16 raw bytes`);
    for (const [name, value] of Object.entries(HEADERS))
      if (m.headers[name] !== value)
        throw new Error(`${where}: header ${name}=${m.headers[name]}, not ${value}`);
    if (m.headers['sequence-number'] !== fromContract.sequence_number)
      throw new Error(
        `${where}: header sequence-number=${m.headers['sequence-number']}, body ${fromContract.sequence_number}`,
      );
    if (!TRACEPARENT.test(m.headers.traceparent ?? ''))
      throw new Error(`${where}: traceparent ${m.headers.traceparent} is not W3C`);
    const p = partitionOf.get(root);
    if (p !== undefined && p !== m.partition)
      throw new Error(`root ${root} in partitions ${p} and ${m.partition}: its order is lost`);
    partitionOf.set(root, m.partition);
    const stream = out.get(root) ?? { updates: [], messages: [] };
    stream.updates.push(fromContract);
    stream.messages.push(m);
    out.set(root, stream);
  }
  return out;
}

/** Sequence numbers of a root's stream, as numbers, in publication order. */
export function sequenceNumbers(stream: RootStream | undefined): number[] {
  return (stream?.updates ?? []).map((u) => Number(u.sequence_number));
}
