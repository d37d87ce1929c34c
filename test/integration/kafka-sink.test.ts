/**
 * KafkaSink against the real broker at KAFKA_BROKER (default 127.0.0.1:9092; start it with
 * `bash ops/services up kafka`). Each run works in a topic of its own.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import kafkajs, { type Admin, type KafkaMessage, type PartitionMetadata } from 'kafkajs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTopic, KafkaSink } from '../../stages/emit/kafka-sink.ts';
import { readLastSequences } from '../../stages/emit/read-back.ts';
import { decodeCanonicalGraphUpdated } from '../../stages/serialize/decode.ts';
import { message, root } from '../support/out-messages.ts';

const brokers = (process.env.KAFKA_BROKER ?? '127.0.0.1:9092').split(',');
const run = randomUUID().slice(0, 8);
const topic = `atlas-test-canonical-${run}`;
const PARTITIONS = 3;
const log = pino({ level: 'silent' });
const kafka = new kafkajs.Kafka({
  clientId: `atlas-test-${run}`,
  brokers,
  logLevel: kafkajs.logLevel.NOTHING,
});
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

const sinks: KafkaSink[] = [];
async function startedSink(options: { topic?: string } = {}): Promise<KafkaSink> {
  const sink = new KafkaSink({
    connection: { brokers },
    topic: options.topic ?? topic,
    log,
    clientId: `atlas-test-${run}`,
  });
  sinks.push(sink);
  await sink.start();
  return sink;
}

/** Every message of the topic, with a consumer of its own. */
async function readAll(name = topic): Promise<Array<KafkaMessage & { partition: number }>> {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(name);
  await admin.disconnect();
  const total = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
  const consumer = kafka.consumer({ groupId: `atlas-test-read-${randomUUID()}` });
  const seen: Array<KafkaMessage & { partition: number }> = [];
  await consumer.connect();
  await consumer.subscribe({ topic: name, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    if (total === 0) resolve();
    const timer = setTimeout(() => reject(new Error(`read ${seen.length} of ${total}`)), 30_000);
    void consumer.run({
      eachMessage: async ({ partition, message: m }) => {
        seen.push({ ...m, partition });
        if (seen.length >= total) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return seen;
}

/** Counts calls into the zstd codec kafkajs uses from now on (KafkaSink.start() installs it afresh). */
function countZstd(): { compress: number; decompress: number } {
  const counts = { compress: 0, decompress: 0 };
  const slot = kafkajs.CompressionTypes.ZSTD;
  const codec = kafkajs.CompressionCodecs[slot]();
  kafkajs.CompressionCodecs[slot] = () => ({
    compress: (encoder: unknown) => {
      counts.compress++;
      return codec.compress(encoder);
    },
    decompress: (buffer: Buffer) => {
      counts.decompress++;
      return codec.decompress(buffer);
    },
  });
  return counts;
}

function partitionOf(rootId: string, partitions: number): number {
  const partitionMetadata: PartitionMetadata[] = Array.from({ length: partitions }, (_, partitionId) => ({
    partitionErrorCode: 0,
    partitionId,
    leader: 0,
    replicas: [0],
    isr: [0],
  }));
  const partitioner = kafkajs.Partitioners.DefaultPartitioner();
  return partitioner({ topic, partitionMetadata, message: { key: Buffer.from(rootId, 'hex'), value: null } });
}

let admin: Admin;

beforeAll(async () => {
  admin = kafka.admin();
  await admin.connect();
  await ensureTopic(admin, { topic, partitions: PARTITIONS, maxMessageBytes: 100_000 });
});

afterAll(async () => {
  for (const sink of sinks) await sink.stop().catch(() => undefined);
  await admin.deleteTopics({ topics: [topic, `${topic}-other`] }).catch(() => undefined);
  await admin.disconnect();
});

describe('ensureTopic', () => {
  it('creates the topic once, compacted and zstd-compressed', async () => {
    const name = `${topic}-other`;
    expect(await ensureTopic(admin, { topic: name, partitions: 2 })).toBe(true);
    expect(await ensureTopic(admin, { topic: name, partitions: 2 })).toBe(false);
    const [meta] = (await admin.fetchTopicMetadata({ topics: [name] })).topics;
    expect(meta?.partitions).toHaveLength(2);
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name }],
    });
    const config = Object.fromEntries(
      described.resources[0]!.configEntries.map((e) => [e.configName, e.configValue]),
    );
    expect(config).toMatchObject({
      'cleanup.policy': 'compact',
      'compression.type': 'zstd',
      'min.compaction.lag.ms': String(7 * 24 * 3600 * 1000),
      'min.insync.replicas': '1',
    });
  });
});

describe('KafkaSink', () => {
  it('refuses to start without its topic', async () => {
    await expect(startedSink({ topic: `${topic}-missing` })).rejects.toThrow(/atlas kafka init/);
  });

  it('publishes with zstd, keyed by the root bytes, with the headers', async () => {
    const sink = await startedSink();
    const zstd = countZstd();
    const given = `00-${'a1'.repeat(16)}-${'b2'.repeat(8)}-01`;
    const sent = [message(root(1), 1, given), message(root(1), 2), message(root(2), 1, 'not-a-traceparent')];
    await sink.publish(sent);
    expect(zstd.compress).toBeGreaterThan(0);

    const read = await readAll();
    expect(read).toHaveLength(3);
    const byKey = (r: string) => read.filter((m) => m.key?.equals(Buffer.from(r, 'hex')));
    expect(byKey(root(1)).map((m) => m.headers?.['sequence-number']?.toString())).toEqual(['1', '2']);
    for (const m of read) {
      expect(m.key).toHaveLength(16);
      const h = Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, v?.toString()]));
      expect(h).toMatchObject({
        'content-type': 'application/x-protobuf',
        'message-name': 'topology.CanonicalGraphUpdated',
        'schema-version': '1',
      });
      expect(h.traceparent).toMatch(TRACEPARENT);
      const view = decodeCanonicalGraphUpdated(m.value!);
      expect(view.root_id).toBe(m.key!.toString('hex'));
      expect(view.sequence_number).toBe(h['sequence-number']);
    }
    expect(byKey(root(1))[0]!.headers?.traceparent?.toString()).toBe(given);
    expect(byKey(root(2))[0]!.headers?.traceparent?.toString()).not.toBe('not-a-traceparent');
  });

  it('reads back the last sequence per root, also from a new instance, from the zstd batches', async () => {
    const first = await startedSink();
    await first.publish([message(root(3), 1), message(root(3), 2), message(root(4), 1), message(root(3), 3)]);
    await first.stop();

    const second = await startedSink();
    const zstd = countZstd();
    const last = await second.lastSequences();
    // kafkajs picks the codec from each stored batch's attributes: these batches are zstd.
    expect(zstd.decompress).toBeGreaterThan(0);
    expect(last.get(root(3))).toBe(3n);
    expect(last.get(root(4))).toBe(1n);
    expect(last.get(root(1))).toBe(2n);
    expect(await second.lastSequences([root(4), root(99)])).toEqual(new Map([[root(4), 1n]]));
    // The throwaway read-back groups are gone.
    const { groups } = await admin.listGroups();
    expect(groups.filter((g) => g.groupId.startsWith(`atlas-test-${run}-read-back-`))).toEqual([]);
  });

  it('reads only from the given offsets on', async () => {
    const sink = await startedSink();
    const admin2 = kafka.admin();
    await admin2.connect();
    const before = new Map(
      (await admin2.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)] as [number, bigint]),
    );
    await admin2.disconnect();
    await sink.publish([message(root(5), 1)]);
    expect(await sink.lastSequences(undefined, before)).toEqual(new Map([[root(5), 1n]]));
    const atEnd = new Map([...before].map(([p]) => [p, 1n << 60n]));
    expect(await sink.lastSequences(undefined, atEnd)).toEqual(new Map());
  });

  it('after a failed publish, publishing the same messages again writes only what had not landed', async () => {
    // Two roots in different partitions: a batch too large for the topic fails in one, lands in the other.
    const small = root(10);
    let large = 11;
    while (partitionOf(root(large), PARTITIONS) === partitionOf(small, PARTITIONS)) large++;
    const sink = await startedSink();
    await sink.publish([message(small, 1), message(root(large), 1)]);

    const tooLarge = { ...message(root(large), 2), value: randomBytes(300_000) };
    const batch = [message(small, 2), tooLarge];
    await expect(sink.publish(batch)).rejects.toThrow();
    expect(await sink.lastSequences([small, root(large)])).toEqual(
      new Map([
        [small, 2n],
        [root(large), 1n],
      ]),
    );
    await sink.publish([message(small, 2), message(root(large), 2), message(small, 3)]);

    const read = await readAll();
    const seqs = (r: string) =>
      read.filter((m) => m.key?.toString('hex') === r).map((m) => m.headers?.['sequence-number']?.toString());
    expect(seqs(small)).toEqual(['1', '2', '3']);
    expect(seqs(root(large))).toEqual(['1', '2']);
  });
});

describe('readLastSequences', () => {
  it('gives up on a read that stops making progress', async () => {
    const offsets = await admin.fetchTopicOffsets(topic);
    // An end past the high watermark is never reached.
    const ranges = offsets.map((o) => ({ partition: o.partition, start: 0n, end: BigInt(o.high) + 5n }));
    const clientId = `atlas-test-${run}`;
    const started = Date.now();
    await expect(readLastSequences({ kafka, admin, clientId, topic, ranges, stallMs: 1500 })).rejects.toThrow(
      /no progress for 1500 ms/,
    );
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
