/**
 * KafkaSink against the real broker at KAFKA_BROKER (default 127.0.0.1:9092; start it with
 * `bash ops/services up kafka`). Each run works in a topic of its own.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import kafkajs, { type Admin, type KafkaMessage, type PartitionMetadata } from 'kafkajs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FencedError } from '../../pipeline/stage.ts';
import { ensureTopic, KafkaSink } from '../../stages/emit/kafka-sink.ts';
import { readLastSequences, readRanges } from '../../stages/emit/read-back.ts';
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
async function startedSink(
  options: { topic?: string; stillActive?: () => Promise<boolean> } = {},
): Promise<KafkaSink> {
  const sink = new KafkaSink({
    connection: { brokers },
    topic: options.topic ?? topic,
    transactionalId: `atlas-test-${run}-${options.topic ?? topic}`,
    log,
    clientId: `atlas-test-${run}`,
    stillActive: options.stillActive,
  });
  sinks.push(sink);
  await sink.start();
  return sink;
}

/**
 * The topic's offsets once the last transaction is settled. They are last stable offsets: a
 * commit returns before the broker has written its markers, and until then they stay put.
 */
async function settledOffsets(name = topic) {
  for (let last = ''; ; await new Promise((r) => setTimeout(r, 100))) {
    const offsets = await admin.fetchTopicOffsets(name);
    if (JSON.stringify(offsets) === last) return offsets;
    last = JSON.stringify(offsets);
  }
}

type Read = Array<KafkaMessage & { partition: number }>;

/**
 * Every committed message of the topic (the sink's own bounded read, read committed), read again
 * until `complete` says the messages just published are in: on a loaded broker a commit's markers
 * can take longer than settledOffsets's 100 ms to move the last stable offsets. What is checked
 * after that (no message twice, order) is checked on everything read.
 */
async function readAll(complete: (read: Read) => boolean, name = topic): Promise<Read> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const offsets = await settledOffsets(name);
    const ranges = offsets.map((o) => ({
      partition: o.partition,
      start: BigInt(o.low),
      end: BigInt(o.high),
    }));
    const seen: Read = [];
    const read = { kafka, admin, clientId: `atlas-test-${run}`, topic: name, ranges, stallMs: 30_000 };
    await readRanges(read, (partition, m) => seen.push({ ...m, partition }));
    if (complete(seen) || Date.now() > deadline) return seen;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const ofRoot = (read: Read, rootId: string) => read.filter((m) => m.key?.toString('hex') === rootId);

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

    const read = await readAll((r) => r.length >= 3);
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
    await settledOffsets();
    expect(await sink.lastSequences(undefined, before)).toEqual(new Map([[root(5), 1n]]));
    const atEnd = new Map([...before].map(([p]) => [p, 1n << 60n]));
    expect(await sink.lastSequences(undefined, atEnd)).toEqual(new Map());
  });

  it('a failed publish lands nothing (one transaction); publishing the same messages again writes each once', async () => {
    // Two roots in different partitions: a batch too large for the topic fails in one; the other
    // partition's part was written too, but its transaction is aborted, so no reader sees it.
    const small = root(10);
    let large = 11;
    while (partitionOf(root(large), PARTITIONS) === partitionOf(small, PARTITIONS)) large++;
    const sink = await startedSink();
    await sink.publish([message(small, 1), message(root(large), 1)]);

    const tooLarge = { ...message(root(large), 2), value: randomBytes(300_000) };
    const batch = [message(small, 2), tooLarge];
    await expect(sink.publish(batch)).rejects.toThrow();
    await settledOffsets();
    expect(await sink.lastSequences([small, root(large)])).toEqual(
      new Map([
        [small, 1n],
        [root(large), 1n],
      ]),
    );
    await sink.publish([message(small, 2), message(root(large), 2), message(small, 3)]);

    const read = await readAll((r) => ofRoot(r, small).length >= 3 && ofRoot(r, root(large)).length >= 2);
    const seqs = (r: string) =>
      read.filter((m) => m.key?.toString('hex') === r).map((m) => m.headers?.['sequence-number']?.toString());
    expect(seqs(small)).toEqual(['1', '2', '3']);
    expect(seqs(root(large))).toEqual(['1', '2']);
  });
});

describe('KafkaSink fencing (one transactional id per emit role)', () => {
  it('a newer instance fences the older one: its publish fails with FencedError and lands nothing', async () => {
    const older = await startedSink();
    await older.publish([message(root(20), 1)]);
    // Initialises the same transactional id: a new epoch, the older one's transactions settled.
    const newer = await startedSink();
    await expect(older.publish([message(root(20), 2)])).rejects.toBeInstanceOf(FencedError);
    expect(await newer.lastSequences([root(20)])).toEqual(new Map([[root(20), 1n]]));
    await newer.publish([message(root(20), 2)]);
    const seqs = ofRoot(await readAll((r) => ofRoot(r, root(20)).length >= 2), root(20)).map((m) =>
      m.headers?.['sequence-number']?.toString(),
    );
    expect(seqs).toEqual(['1', '2']);
  });

  it('each start() initialises anew, fencing whoever held the role in between', async () => {
    const first = await startedSink();
    const second = await startedSink(); // fences first
    await second.publish([message(root(22), 1)]);
    await first.start(); // first is active again: second is the older instance now
    await expect(second.publish([message(root(22), 2)])).rejects.toBeInstanceOf(FencedError);
    await first.publish([message(root(22), 2)]);
    await settledOffsets();
    expect(await first.lastSequences([root(22)])).toEqual(new Map([[root(22), 2n]]));
  });

  it('does not initialise a producer once stillActive() says another instance took over', async () => {
    let active = true;
    const sink = await startedSink({ stillActive: async () => active });
    const tooLarge = { ...message(root(21), 1), value: randomBytes(300_000) };
    await expect(sink.publish([tooLarge])).rejects.toThrow(); // drops the producer
    active = false;
    await expect(sink.publish([message(root(21), 1)])).rejects.toBeInstanceOf(FencedError);
    await settledOffsets();
    expect(await sink.lastSequences([root(21)])).toEqual(new Map());
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
