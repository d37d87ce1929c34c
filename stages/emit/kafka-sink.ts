/**
 * Kafka sink of the emit stage: an idempotent producer (acks=all, one request in flight, zstd),
 * key = the root id's 16 bytes, so each root stays in one partition, in order. What the topic
 * already holds is read back from the topic itself, bounded by the high watermarks.
 */
import kafkajs, { type Admin, type ITopicConfig, type Kafka, type LogEntry, type Producer } from 'kafkajs';
import type { Logger } from '../../pipeline/log.ts';
import { LogLimit } from '../../pipeline/log-limit.ts';
import type { KafkaConnection } from './kafka-client.ts';
import { prepareKafkajs } from './kafkajs-node24.ts';
import { type PartitionRange, readLastSequences, readTails, SEQUENCE_HEADER } from './read-back.ts';
import {
  GENERATION_HEADER,
  type OutMessage,
  onlyRoots,
  rootsOf,
  type Sink,
  type Tail,
  traceparentOf,
  unpublished,
} from './sink.ts';

export interface KafkaSinkOptions {
  /** Brokers, TLS and SASL, from kafkaConnection(). */
  connection: KafkaConnection;
  topic: string;
  log: Logger;
  clientId?: string;
  /** lastSequences() throws once its read of the topic has made no progress for this long. */
  readStallMs?: number;
  /** Retries of one send before publish() throws. */
  retries?: number;
}

const HEADERS = {
  'content-type': 'application/x-protobuf',
  'message-name': 'topology.CanonicalGraphUpdated',
  'schema-version': '1',
};

export class KafkaSink implements Sink {
  private readonly kafka: Kafka;
  private readonly clientId: string;
  private readonly topic: string;
  private readonly log: Logger;
  private readonly readStallMs: number;
  private readonly retries: number;
  private readonly admin: Admin;
  private producer: Producer | null = null;
  private adminConnected: Promise<void> | undefined;
  /**
   * Per partition, an offset at or before every message this instance may have written since its
   * last successful send there: where to re-read after a failure.
   */
  private readonly written = new Map<number, bigint>();
  /** kafkajs logs each failed retry: one line per kind every 10 s, with the count held back. */
  private readonly logLimit = new LogLimit(10_000);
  /** A send failed: part of it may have landed. */
  private uncertain = false;

  constructor(options: KafkaSinkOptions) {
    this.clientId = options.clientId ?? 'atlas-emit';
    this.topic = options.topic;
    this.log = options.log;
    this.readStallMs = options.readStallMs ?? 30_000;
    this.retries = options.retries ?? 5;
    this.kafka = new kafkajs.Kafka({
      clientId: this.clientId,
      ...options.connection,
      // kafkajs's default schedule (300 ms doubling to 30 s; 15 retries under NODE_ENV=test) makes
      // a call against a dead broker fail only after ~25 s, so the emit circuit (3 failures) opened
      // after a 30 s outage instead of during it. Fail within a few seconds: the worker retries the
      // step with its own backoff. Every field is given, so NODE_ENV cannot change it.
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000, multiplier: 2, factor: 0.2 },
      logLevel: kafkajs.logLevel.WARN,
      logCreator: () => (entry) => this.kafkaLog(entry),
    });
    this.admin = this.kafka.admin();
  }

  async start(): Promise<void> {
    await this.connectAdmin();
    const topics = await this.admin.listTopics();
    if (!topics.includes(this.topic)) {
      throw new Error(`Kafka topic ${this.topic} does not exist: create it with \`atlas kafka init\``);
    }
    // Kept across restarts of the sink: a send that failed before may still need its re-read.
    for (const r of await this.ranges())
      if (!this.written.has(r.partition)) this.written.set(r.partition, r.end);
    await this.connectedProducer();
  }

  /**
   * Reads the whole topic, or from `fromOffsets` on (per partition, e.g. offsets the caller
   * recorded): then only roots published since appear, the caller knows the rest.
   */
  async lastSequences(
    roots?: readonly string[],
    fromOffsets?: ReadonlyMap<number, bigint>,
  ): Promise<Map<string, bigint>> {
    const ranges = await this.ranges(fromOffsets);
    const found = await readLastSequences({
      kafka: this.kafka,
      admin: this.admin,
      clientId: this.clientId,
      topic: this.topic,
      ranges,
      stallMs: this.readStallMs,
    });
    return onlyRoots(found, roots);
  }

  async tails(): Promise<Map<string, Tail>> {
    return readTails({
      kafka: this.kafka,
      admin: this.admin,
      clientId: this.clientId,
      topic: this.topic,
      ranges: await this.ranges(),
      stallMs: this.readStallMs,
    });
  }

  async publish(messages: readonly OutMessage[]): Promise<void> {
    if (messages.length === 0) return;
    let batch = messages;
    if (this.uncertain) {
      batch = unpublished(messages, await this.lastSequences(rootsOf(messages), this.written));
      this.uncertain = false;
    }
    if (batch.length === 0) return;
    const records = batch.map(toKafkaMessage);
    const producer = await this.connectedProducer();
    try {
      const results = await producer.send({
        topic: this.topic,
        acks: -1,
        compression: kafkajs.CompressionTypes.ZSTD,
        messages: records,
      });
      for (const r of results)
        if (r.baseOffset !== undefined) this.written.set(r.partition, BigInt(r.baseOffset));
    } catch (err) {
      this.uncertain = true;
      await this.dropProducer();
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.dropProducer();
    this.adminConnected = undefined;
    await this.admin.disconnect();
  }

  /** Reading needs only the admin client: tails() works without start() (`atlas recover`). */
  private connectAdmin(): Promise<void> {
    prepareKafkajs();
    this.adminConnected ??= this.admin.connect().catch((err: unknown) => {
      this.adminConnected = undefined;
      throw err;
    });
    return this.adminConnected;
  }

  /** Per partition from `from` (clamped to what the log holds) to the high watermark. */
  private async ranges(from?: ReadonlyMap<number, bigint>): Promise<PartitionRange[]> {
    await this.connectAdmin();
    const offsets = await this.admin.fetchTopicOffsets(this.topic);
    return offsets.map(({ partition, low, high }) => {
      const [first, end] = [BigInt(low), BigInt(high)];
      const start = from?.get(partition) ?? first;
      return { partition, start: start < first ? first : start > end ? end : start, end };
    });
  }

  private async connectedProducer(): Promise<Producer> {
    if (this.producer) return this.producer;
    const producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // Java-compatible murmur2 of the key: other clients place a root's key the same way.
      createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
      retry: { retries: this.retries },
    });
    await producer.connect();
    this.producer = producer;
    return producer;
  }

  /**
   * After a failed send the producer's sequence numbers may no longer match the broker's; a new
   * producer gets a new producer id, and publish() re-reads what landed.
   */
  private async dropProducer(): Promise<void> {
    const producer = this.producer;
    this.producer = null;
    await producer
      ?.disconnect()
      .catch((err: unknown) => this.log.warn({ err }, 'kafka: producer disconnect failed'));
  }

  private kafkaLog({ level, namespace, log: { message, timestamp: _, ...fields } }: LogEntry): void {
    // publish() throws after `retries` and then re-reads what landed, which is what this warns about.
    if (message.startsWith('Limiting retries for the idempotent producer')) return;
    const at = level <= kafkajs.logLevel.ERROR ? 'error' : level === kafkajs.logLevel.WARN ? 'warn' : 'debug';
    // Per kind of line: the message without its numbers (broker ports, retry counts, ids).
    const suppressed = this.logLimit.admit(`${namespace} ${message.replace(/\d+/g, '#')}`);
    if (suppressed === null) return;
    this.log[at]({ ...fields, namespace, ...(suppressed > 0 ? { suppressed } : {}) }, `kafka: ${message}`);
  }
}

function toKafkaMessage(m: OutMessage) {
  if (!/^[0-9a-f]{32}$/.test(m.rootId))
    throw new TypeError(`root id ${JSON.stringify(m.rootId)} is not 32 hex chars`);
  return {
    key: Buffer.from(m.rootId, 'hex'),
    value: Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength),
    headers: {
      ...HEADERS,
      [SEQUENCE_HEADER]: m.sequenceNumber.toString(),
      traceparent: traceparentOf(m.traceparent),
      ...(m.generation ? { [GENERATION_HEADER]: m.generation } : {}),
    },
  };
}

export interface TopicSettings {
  topic: string;
  /** Upper bound on emit parallelism per topic; 6 suits one broker and a few consumers. */
  partitions?: number;
  replicationFactor?: number;
  /** How long every message stays readable before compaction keeps only the latest per root. */
  historyMs?: number;
  /** Largest compressed batch; a big canonical tree is one message. */
  maxMessageBytes?: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Creates the output topic unless it exists (for `atlas kafka init`); returns whether it did.
 *
 * cleanup.policy=compact, not compact,delete: the topic is the latest graph of every root, and a
 * root may not change for months. Deleting by age would drop a quiet root's only message, so a
 * consumer bootstrapping from the topic would miss the root and the emit stage could no longer see
 * what it published. min.compaction.lag.ms keeps every update readable for `historyMs` first, so a
 * consumer that follows sequence numbers sees no gaps unless it lags longer than that.
 */
export async function ensureTopic(admin: Admin, settings: TopicSettings): Promise<boolean> {
  const replicationFactor = settings.replicationFactor ?? 1;
  const config: Record<string, number | string> = {
    'cleanup.policy': 'compact',
    'min.compaction.lag.ms': settings.historyMs ?? 7 * DAY_MS,
    'compression.type': 'zstd',
    'max.message.bytes': settings.maxMessageBytes ?? 16 * 1024 * 1024,
    // acks=all waits for this many replicas: 2 survives losing one broker without losing writes.
    'min.insync.replicas': Math.min(2, replicationFactor),
  };
  const topic: ITopicConfig = {
    topic: settings.topic,
    numPartitions: settings.partitions ?? 6,
    replicationFactor,
    configEntries: Object.entries(config).map(([name, value]) => ({ name, value: String(value) })),
  };
  return admin.createTopics({ topics: [topic], waitForLeaders: true });
}
