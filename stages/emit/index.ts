/**
 * Stage `emit`: publishes each root's messages in `sequence_number` order, never twice.
 * On activation it asks the sink what it already holds (read back from the output itself)
 * and skips that. Both sinks refuse the writes of an instance whose lease has passed to another
 * (Kafka by producer epochs, the Redis sink by the lease fence): it steps down (FencedError). Sink faults are transient — retried behind a circuit breaker, never
 * dead-lettered — while the Redis stream holds the backlog.
 */
import { CircuitBreaker } from '../../pipeline/circuit-breaker.ts';
import type { Entry } from '../../pipeline/entry.ts';
import { streams } from '../../pipeline/keys.ts';
import { endToEndSeconds } from '../../pipeline/metrics.ts';
import { FencedError, type StageFactory, TransientError } from '../../pipeline/stage.ts';
import { KafkaSink } from './kafka-sink.ts';
import { RedisSink } from './redis-sink.ts';
import { type Sink, unpublished } from './sink.ts';

export const createEmit: StageFactory = ({ config, redis, keys, log, lease }) => {
  const topic = config.KAFKA_TOPIC_CANONICAL;
  /** Asks Redis, not memory: a paused instance still remembers the lease it lost meanwhile. */
  const stillActive = async () => {
    const held = lease();
    return held !== undefined && (await redis.get(held.key)) === held.token;
  };
  const sink: Sink = config.KAFKA_BROKER
    ? new KafkaSink({
        brokers: config.KAFKA_BROKER.split(','),
        topic,
        transactionalId: config.KAFKA_TRANSACTIONAL_ID || `atlas-emit-${config.ATLAS_PREFIX}-${topic}`,
        stillActive,
        log,
      })
    : new RedisSink(redis, keys.stream(`out:${topic}`), lease);
  log.info(
    config.KAFKA_BROKER ? { broker: config.KAFKA_BROKER, topic } : { stream: keys.stream(`out:${topic}`) },
    config.KAFKA_BROKER
      ? 'emit: publishing to Kafka'
      : 'emit: KAFKA_BROKER is not set; publishing to the Redis stream sink',
  );
  const breaker = new CircuitBreaker('emit');
  /**
   * Highest sequence number the sink has confirmed per root, in this process. A step whose send
   * succeeded but whose commit hit a Redis fault is retried in place: this keeps the retry from
   * sending the same messages again.
   */
  const published = new Map<string, bigint>();

  async function publish(entries: Entry[]): Promise<void> {
    if (!breaker.allows()) throw new TransientError('sink circuit open');
    const all = entries.map((e) => ({
      rootId: e.text('root'),
      sequenceNumber: BigInt(e.text('sequence_number')),
      value: e.bytes('value'),
      traceparent: e.text('traceparent'),
    }));
    const messages = unpublished(all, published);
    if (messages.length === 0) return;
    try {
      await sink.publish(messages);
      for (const m of messages) published.set(m.rootId, m.sequenceNumber);
      breaker.success();
    } catch (err) {
      if (err instanceof FencedError) throw err; // another instance is active: not a sink fault
      breaker.failure();
      throw new TransientError(
        `publishing to the sink failed: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }

  return {
    name: 'emit',
    input: streams.serialized,
    singleton: true,
    order: { seq: 'sequence_number', key: 'root' },
    async activate() {
      try {
        await sink.start();
        const last = await sink.lastSequences();
        published.clear();
        for (const [root, seq] of last) published.set(root, seq);
        breaker.success();
        return new Map([...last].map(([root, seq]) => [root, seq + 1n]));
      } catch (err) {
        if (err instanceof FencedError) throw err;
        breaker.failure();
        throw new TransientError('sink unavailable at start', { cause: err });
      }
    },
    async handle(entries, step) {
      const messages = entries.filter((e) => !e.has('skip'));
      for (const e of entries) {
        if (e.has('skip'))
          log.warn(
            { root: e.text('root'), sequence_number: e.text('sequence_number') },
            'skipped: dead-lettered upstream',
          );
      }
      if (messages.length > 0) await publish(messages);
      const now = Date.now();
      for (const e of entries) {
        const receivedAt = Number(e.optionalText('received_at'));
        if (receivedAt > 0) endToEndSeconds.observe({ stage: 'emit' }, (now - receivedAt) / 1000);
        step.ack(e);
      }
    },
    notReady: () => (breaker.open ? 'sink unreachable (circuit open)' : null),
    stop: () => sink.stop(),
  };
};
