/**
 * Where the publish stage sends events of the generic families: Kafka (one transaction per
 * batch, topics created on first use), or — without KAFKA_BROKER — a Redis stream per topic,
 * appended in the stage's own atomic step.
 */
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import type { Config } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { FencedError, type Step } from '../../pipeline/stage.ts';
import { kafkaConnection } from '../emit/kafka-client.ts';
import { prepareKafkajs } from '../emit/kafkajs-node24.ts';
import { outStream } from '../streams.ts';

export interface EventMessage {
  topic: string;
  key: string;
  /** JSON of the (current-version) payload, or of a summary. */
  value: string;
  headers: Record<string, string>;
}

export interface EventSink {
  start(): Promise<void>;
  /** Resolves once every message is durably written; throws otherwise (the step is retried). */
  publish(messages: readonly EventMessage[], step: Step): Promise<void>;
  stop(): Promise<void>;
}

/** `role` names the transactional id: one per lane, or the lanes would fence each other. */
export function openEventSink(
  config: Config,
  role: string,
  stillActive: () => Promise<boolean>,
  log: Logger,
): EventSink {
  if (!config.KAFKA_BROKER) {
    log.info('publish: KAFKA_BROKER is not set; publishing to Redis streams out:<topic>');
    return new RedisEventSink();
  }
  return new KafkaEventSink(config, `atlas-${role}-${config.ATLAS_PREFIX}`, stillActive);
}

class RedisEventSink implements EventSink {
  async start(): Promise<void> {}
  async publish(messages: readonly EventMessage[], step: Step): Promise<void> {
    for (const m of messages) step.send({ key: m.key, value: m.value, ...m.headers }, outStream(m.topic));
  }
  async stop(): Promise<void> {}
}

/**
 * A transactional producer whose id belongs to the publish role: initialising it fences an older
 * instance (one paused past its lease), so a zombie's batch never lands after the new one's.
 */
class KafkaEventSink implements EventSink {
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly transactionalId: string;
  private readonly stillActive: () => Promise<boolean>;
  private readonly partitions: number;
  private producer: Producer | null = null;
  private readonly topics = new Set<string>();

  constructor(config: Config, transactionalId: string, stillActive: () => Promise<boolean>) {
    prepareKafkajs();
    this.kafka = new kafkajs.Kafka({
      ...kafkaConnection(config),
      clientId: 'atlas-publish',
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000, multiplier: 2, factor: 0.2 },
      logLevel: kafkajs.logLevel.ERROR,
    });
    this.admin = this.kafka.admin();
    this.transactionalId = transactionalId;
    this.stillActive = stillActive;
    this.partitions = config.ATLAS_EVENT_TOPIC_PARTITIONS;
  }

  async start(): Promise<void> {
    await this.admin.connect();
    for (const t of await this.admin.listTopics()) this.topics.add(t);
    await this.dropProducer();
    await this.connectedProducer();
  }

  async publish(messages: readonly EventMessage[]): Promise<void> {
    await this.ensureTopics(messages);
    const producer = await this.connectedProducer();
    const byTopic = new Map<string, { key: string; value: string; headers: Record<string, string> }[]>();
    for (const m of messages) {
      const list = byTopic.get(m.topic) ?? [];
      list.push({ key: m.key, value: m.value, headers: m.headers });
      byTopic.set(m.topic, list);
    }
    const tx = await producer.transaction();
    try {
      await tx.sendBatch({ topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })) });
      await tx.commit();
    } catch (err) {
      await tx.abort().catch(() => undefined);
      await this.dropProducer();
      if (
        err instanceof Error &&
        /fenced|ProducerFenced|INVALID_PRODUCER_EPOCH/i.test(err.name + err.message)
      ) {
        throw new FencedError('another publish instance initialised the producer', { cause: err });
      }
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.dropProducer();
    await this.admin.disconnect().catch(() => undefined);
  }

  /** Topics are templates over the events: a new one is created on first use. */
  private async ensureTopics(messages: readonly EventMessage[]): Promise<void> {
    const missing = [...new Set(messages.map((m) => m.topic))].filter((t) => !this.topics.has(t));
    if (missing.length === 0) return;
    await this.admin.createTopics({
      topics: missing.map((topic) => ({ topic, numPartitions: this.partitions })),
      waitForLeaders: true,
    });
    for (const t of missing) this.topics.add(t);
  }

  private async connectedProducer(): Promise<Producer> {
    if (this.producer) return this.producer;
    if (!(await this.stillActive())) {
      throw new FencedError('the publish lease is no longer ours: not initialising the producer');
    }
    const producer = this.kafka.producer({
      transactionalId: this.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
      retry: { retries: 7, initialRetryTime: 25 },
    });
    await producer.connect();
    this.producer = producer;
    return producer;
  }

  private async dropProducer(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    await p?.disconnect().catch(() => undefined);
  }
}
