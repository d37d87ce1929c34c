/**
 * Where the publish stage sends events of the generic families: Kafka (one transaction per
 * batch, topics created on first use), or — without KAFKA_BROKER — a Redis stream per topic,
 * appended in the stage's own atomic step.
 *
 * Exactly once with Kafka: every transaction also writes the lane's progress record (what it
 * published that Redis may not have acknowledged yet) to a compacted progress topic, partition =
 * the lane. The record
 * commits or aborts with the batch, so after a crash between the Kafka commit and the Redis
 * commit the last committed record says what was published; the stage acknowledges those
 * entries instead of sending them again. The Redis sink needs no record: its appends are part of
 * the stage's step (commit.lua), fenced by the lease and atomic with the acks.
 */
import kafkajs, { type Admin, type Kafka, type Producer } from 'kafkajs';
import type { Config } from '../../pipeline/config.ts';
import { type Lane, lanes } from '../../pipeline/lanes.ts';
import type { Logger } from '../../pipeline/log.ts';
import { FencedError, type Step } from '../../pipeline/stage.ts';
import { isFenced, kafkaConnection, openTransactionalProducer } from '../emit/kafka-client.ts';
import { prepareKafkajs } from '../emit/kafkajs-node24.ts';
import { readRanges } from '../emit/read-back.ts';
import { outStream } from '../streams.ts';

export interface EventMessage {
  topic: string;
  key: string;
  /** JSON of the (current-version) payload, or of a summary. */
  value: string;
  headers: Record<string, string>;
}

/** How far a lane has published: written in the same transaction as what it describes. */
export interface Progress {
  /**
   * The pipeline generation the entry ids belong to: after `atlas recover` (a new Redis state)
   * the stream's ids start afresh and an older record says nothing about them.
   */
  generation: string;
  /** Entries of `events:<lane>` published whose acknowledgement in Redis may not be committed yet. */
  ids: string[];
  /** Summary windows published whose clearing in Redis may not be committed yet. */
  windows: string[];
}

export const NO_PROGRESS: Progress = { generation: '', ids: [], windows: [] };

export interface EventSink {
  start(): Promise<void>;
  /**
   * What the sink holds as published (Kafka: the last committed progress record, read after
   * fencing every older producer); null when publishing is part of the stage's own step.
   */
  progress(): Promise<Progress | null>;
  /** Resolves once every message and the progress are durably written; throws otherwise. */
  publish(messages: readonly EventMessage[], progress: Progress, step: Step): Promise<void>;
  stop(): Promise<void>;
}

/** `lane` names the transactional id: one per lane, or the lanes would fence each other. */
export function openEventSink(
  config: Config,
  lane: Lane,
  stillActive: () => Promise<boolean>,
  log: Logger,
): EventSink {
  if (!config.KAFKA_BROKER) {
    log.info('publish: KAFKA_BROKER is not set; publishing to Redis streams out:<topic>');
    return new RedisEventSink();
  }
  return new KafkaEventSink(config, lane, stillActive, log);
}

export function progressTopic(config: Config): string {
  return config.KAFKA_TOPIC_PUBLISH_PROGRESS || `atlas.publish-progress.${config.ATLAS_PREFIX}`;
}

/** Appends in the step, which commit.lua applies only while the lease is ours, with the acks. */
class RedisEventSink implements EventSink {
  async start(): Promise<void> {}
  async progress(): Promise<null> {
    return null;
  }
  async publish(messages: readonly EventMessage[], _progress: Progress, step: Step): Promise<void> {
    for (const m of messages) step.send({ key: m.key, value: m.value, ...m.headers }, outStream(m.topic));
  }
  async stop(): Promise<void> {}
}

/** How many offsets back from the end the progress read starts; a lane's partition holds only its records. */
const PROGRESS_TAIL = 1000n;

/**
 * A transactional producer whose id belongs to the publish role of one lane: initialising it
 * fences an older instance (one paused past its lease) and settles its open transaction, so a
 * zombie's batch never lands after the new one's and the progress read after it is final.
 */
class KafkaEventSink implements EventSink {
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly transactionalId: string;
  private readonly stillActive: () => Promise<boolean>;
  private readonly partitions: number;
  private readonly lane: Lane;
  private readonly progressTopic: string;
  private readonly killAfter: number;
  private readonly log: Logger;
  private commits = 0;
  private producer: Producer | null = null;
  private readonly topics = new Set<string>();

  constructor(config: Config, lane: Lane, stillActive: () => Promise<boolean>, log: Logger) {
    prepareKafkajs();
    this.kafka = new kafkajs.Kafka({
      ...kafkaConnection(config),
      clientId: 'atlas-publish',
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000, multiplier: 2, factor: 0.2 },
      logLevel: kafkajs.logLevel.ERROR,
    });
    this.admin = this.kafka.admin();
    this.transactionalId = `atlas-publish-${lane}-${config.ATLAS_PREFIX}`;
    this.stillActive = stillActive;
    this.partitions = config.ATLAS_EVENT_TOPIC_PARTITIONS;
    this.lane = lane;
    this.progressTopic = progressTopic(config);
    this.killAfter = config.ATLAS_FAULT_KILL_AFTER_PUBLISH;
    this.log = log;
  }

  async start(): Promise<void> {
    await this.admin.connect();
    for (const t of await this.admin.listTopics()) this.topics.add(t);
    await this.ensureProgressTopic();
    await this.dropProducer();
    await this.connectedProducer();
  }

  async progress(): Promise<Progress> {
    // First the producer: its initialisation settles (commits or aborts) any open transaction of
    // ours, so the read below sees the final outcome of every batch sent before.
    await this.connectedProducer();
    const partition = lanes.indexOf(this.lane);
    const offsets = await this.admin.fetchTopicOffsets(this.progressTopic);
    const range = offsets.find((o) => o.partition === partition);
    if (!range) throw new Error(`${this.progressTopic} has no partition ${partition}`);
    const [low, end] = [BigInt(range.low), BigInt(range.high)];
    for (let start = end - PROGRESS_TAIL; ; start = low) {
      const found = await this.readProgress(partition, start < low ? low : start, end);
      if (found || start <= low) return found ?? NO_PROGRESS;
    }
  }

  async publish(messages: readonly EventMessage[], progress: Progress): Promise<void> {
    await this.ensureTopics(messages);
    const producer = await this.connectedProducer();
    const byTopic = new Map<string, { key: string; value: string; headers: Record<string, string> }[]>();
    for (const m of messages) {
      const list = byTopic.get(m.topic) ?? [];
      list.push({ key: m.key, value: m.value, headers: m.headers });
      byTopic.set(m.topic, list);
    }
    const record = {
      key: this.lane,
      partition: lanes.indexOf(this.lane),
      value: JSON.stringify({
        generation: progress.generation,
        ids: progress.ids,
        windows: progress.windows,
      }),
    };
    const tx = await producer.transaction();
    try {
      await tx.sendBatch({
        topicMessages: [
          ...[...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
          { topic: this.progressTopic, messages: [record] },
        ],
      });
      await tx.commit();
    } catch (err) {
      await tx.abort().catch(() => undefined);
      await this.dropProducer();
      if (isFenced(err))
        throw new FencedError('another publish instance initialised the producer', { cause: err });
      throw err;
    }
    this.faultAfterCommit();
  }

  async stop(): Promise<void> {
    await this.dropProducer();
    await this.admin.disconnect().catch(() => undefined);
  }

  /** ATLAS_FAULT_KILL_AFTER_PUBLISH: dies like kill -9 in the window the progress record covers. */
  private faultAfterCommit(): void {
    if (this.killAfter === 0 || ++this.commits < this.killAfter) return;
    this.log.warn({ commits: this.commits }, 'ATLAS_FAULT_KILL_AFTER_PUBLISH: killing this process');
    process.kill(process.pid, 'SIGKILL');
  }

  /** The last committed record of this lane in [start, end) of its partition, if any. */
  private async readProgress(partition: number, start: bigint, end: bigint): Promise<Progress | null> {
    let found: Progress | null = null;
    await readRanges(
      {
        kafka: this.kafka,
        admin: this.admin,
        clientId: `atlas-publish-${this.lane}`,
        topic: this.progressTopic,
        ranges: [{ partition, start, end }],
        stallMs: 30_000,
      },
      (p, message) => {
        if (p !== partition || message.key?.toString() !== this.lane || !message.value) return;
        if (BigInt(message.offset) < start) return;
        const parsed = JSON.parse(message.value.toString()) as {
          generation: string;
          ids: string[];
          windows: string[];
        };
        found = { generation: parsed.generation, ids: parsed.ids, windows: parsed.windows };
      },
    );
    return found;
  }

  /** One partition per lane, compacted: only each lane's last record matters. */
  private async ensureProgressTopic(): Promise<void> {
    if (this.topics.has(this.progressTopic)) return;
    await this.admin.createTopics({
      topics: [
        {
          topic: this.progressTopic,
          numPartitions: lanes.length,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        },
      ],
      waitForLeaders: true,
    });
    this.topics.add(this.progressTopic);
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
    const producer = await openTransactionalProducer(this.kafka, this.transactionalId, 7);
    this.producer = producer;
    return producer;
  }

  private async dropProducer(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    await p?.disconnect().catch(() => undefined);
  }
}
