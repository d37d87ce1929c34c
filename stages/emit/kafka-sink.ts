/**
 * Kafka sink of the emit stage: a transactional producer (acks=all, one request in flight, zstd),
 * one transaction per publish, key = the root id's 16 bytes, so each root stays in one partition,
 * in order. The transactional id belongs to the emit role, not to a process: initialising it
 * bumps the producer epoch, so the broker refuses every later write of an older instance (one
 * paused past its lease) and aborts its open transaction. What the topic already holds is read
 * back (committed messages only) from the topic itself, bounded by the high watermarks.
 */
import kafkajs, {
  type Admin,
  type ITopicConfig,
  type Kafka,
  type LogEntry,
  type Producer,
  type Transaction,
} from 'kafkajs';
import type { Logger } from '../../pipeline/log.ts';
import { LogLimit } from '../../pipeline/log-limit.ts';
import { FencedError } from '../../pipeline/stage.ts';
import { isFenced, type KafkaConnection, openTransactionalProducer } from './kafka-client.ts';
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
  /** Shared by every instance of the emit role for this topic (and only by them). */
  transactionalId: string;
  log: Logger;
  clientId?: string;
  /**
   * Asked before every producer initialisation, which fences whoever initialised last: false
   * means another instance took over, and initialising would fence the legitimate holder.
   */
  stillActive?: () => Promise<boolean>;
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
  private readonly transactionalId: string;
  private readonly stillActive: () => Promise<boolean>;
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
  /** A publish failed: its transaction may have committed all the same. */
  private uncertain = false;

  constructor(options: KafkaSinkOptions) {
    this.clientId = options.clientId ?? 'atlas-emit';
    this.topic = options.topic;
    this.transactionalId = options.transactionalId;
    this.stillActive = options.stillActive ?? (async () => true);
    this.log = options.log;
    this.readStallMs = options.readStallMs ?? 30_000;
    this.retries = options.retries ?? 7;
    this.kafka = new kafkajs.Kafka({
      ...options.connection,
      clientId: this.clientId,
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
    // First: initialising the producer fences older instances and completes or aborts their open
    // transaction, so nothing they do lands after the read-back below (which then does not wait
    // on an open transaction either). Always a new one: a producer kept from an earlier term of
    // this instance would fence nobody (and may have been fenced itself meanwhile).
    await this.dropProducer();
    await this.connectedProducer();
    // Kept across restarts of the sink: a publish that failed before may still need its re-read.
    for (const r of await this.ranges())
      if (!this.written.has(r.partition)) this.written.set(r.partition, r.end);
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

  /** Reading needs no producer: tails() works without start() (`atlas recover`). */
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
    // Before the read-back: a re-initialised producer has fenced what could still land.
    const producer = await this.connectedProducer();
    let batch = messages;
    if (this.uncertain) {
      batch = unpublished(messages, await this.lastSequences(rootsOf(messages), this.written));
      this.uncertain = false;
    }
    if (batch.length === 0) return;
    let transaction: Transaction | undefined;
    try {
      transaction = await producer.transaction();
      const results = await transaction.send({
        topic: this.topic,
        acks: -1,
        compression: kafkajs.CompressionTypes.ZSTD,
        messages: batch.map(toKafkaMessage),
      });
      await transaction.commit();
      for (const r of results)
        if (r.baseOffset !== undefined) this.written.set(r.partition, BigInt(r.baseOffset));
    } catch (err) {
      this.uncertain = true;
      // Best effort: a commit that failed may not be abortable; the next initialisation decides.
      if (transaction?.isActive()) await transaction.abort().catch(() => undefined);
      await this.dropProducer();
      if (isFenced(err))
        throw new FencedError('Kafka fenced the emit producer: another instance took over', { cause: err });
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.dropProducer();
    this.adminConnected = undefined;
    await this.admin.disconnect();
  }

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
    if (!(await this.stillActive()))
      throw new FencedError('the emit lease is no longer ours: not initialising the producer');
    const producer = await openTransactionalProducer(this.kafka, this.transactionalId, this.retries);
    this.producer = producer;
    return producer;
  }

  /**
   * After a failed publish the producer's state may no longer match the broker's; the next
   * publish initialises a new one (which settles the failed transaction) and re-reads what landed.
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
    // CONCURRENT_TRANSACTIONS, the wait for the previous transaction's markers (see
    // connectedProducer): expected and retried. kafkajs logs it only as text.
    if (`${message} ${String(fields.error ?? '')}`.includes(CONCURRENT_TRANSACTIONS)) return;
    const at = level <= kafkajs.logLevel.ERROR ? 'error' : level === kafkajs.logLevel.WARN ? 'warn' : 'debug';
    // Per kind of line: the message without its numbers (broker ports, retry counts, ids).
    const suppressed = this.logLimit.admit(`${namespace} ${message.replace(/\d+/g, '#')}`);
    if (suppressed === null) return;
    this.log[at]({ ...fields, namespace, ...(suppressed > 0 ? { suppressed } : {}) }, `kafka: ${message}`);
  }
}

/** How kafkajs words CONCURRENT_TRANSACTIONS (code 51) in its logs. */
const CONCURRENT_TRANSACTIONS = 'another concurrent operation on the same transaction was ongoing';

function toKafkaMessage(m: OutMessage) {
  if (!/^[0-9a-f]{32}$/.test(m.rootId))
    throw new TypeError(`root id ${JSON.stringify(m.rootId)} is not 32 hex chars`);
  return {
    key: Buffer.from(m.rootId, 'hex'),
    value: Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength),
    headers: {
      ...HEADERS,
      ...(m.messageName ? { 'message-name': m.messageName } : {}),
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
  return admin.createTopics({ topics: [topicSpec(settings)], waitForLeaders: true });
}

/** The topic as the pipeline wants it: `atlas kafka init` creates it so and checks an existing one against it. */
export function topicSpec(
  settings: TopicSettings,
): ITopicConfig & { configEntries: Array<{ name: string; value: string }> } {
  const replicationFactor = settings.replicationFactor ?? 1;
  const config: Record<string, number | string> = {
    'cleanup.policy': 'compact',
    'min.compaction.lag.ms': settings.historyMs ?? 7 * DAY_MS,
    'compression.type': 'zstd',
    'max.message.bytes': settings.maxMessageBytes ?? 16 * 1024 * 1024,
    // acks=all waits for this many replicas: 2 survives losing one broker without losing writes.
    'min.insync.replicas': Math.min(2, replicationFactor),
  };
  return {
    topic: settings.topic,
    numPartitions: settings.partitions ?? 6,
    replicationFactor,
    configEntries: Object.entries(config).map(([name, value]) => ({ name, value: String(value) })),
  };
}
