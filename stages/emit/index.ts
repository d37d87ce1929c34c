/**
 * Stage `emit`: publishes each root's messages in `sequence_number` order, never twice.
 * On activation it asks the sink what it already holds (read back from the output itself)
 * and skips that. Both sinks refuse the writes of an instance whose lease has passed to another
 * (Kafka by producer epochs, the Redis sink by the lease fence): it steps down (FencedError). Sink faults are transient — retried behind a circuit breaker, never
 * dead-lettered — while the Redis stream holds the backlog.
 */
import { CircuitBreaker } from '../../pipeline/circuit-breaker.ts';
import type { Entry } from '../../pipeline/entry.ts';
import { type Generation, StateLostError } from '../../pipeline/generation.ts';
import { entryLog, type Logger } from '../../pipeline/log.ts';
import { endToEndSeconds, metrics } from '../../pipeline/metrics.ts';
import { redactUrl } from '../../pipeline/secrets.ts';
import { FencedError, type StageContext, type StageFactory, TransientError } from '../../pipeline/stage.ts';
import { sendSpans } from '../../pipeline/tracing.ts';
import { streams } from '../streams.ts';
import { kafkaConnection } from './kafka-client.ts';
import { KafkaSink } from './kafka-sink.ts';
import { metered } from './metered-sink.ts';
import { RedisSink } from './redis-sink.ts';
import { type OutMessage, type Sink, sequencesOf, type Tail, unpublished } from './sink.ts';

export const createEmit: StageFactory = (ctx) => {
  const { log } = ctx;
  const sink = openSink(ctx);
  const topic = ctx.config.KAFKA_TOPIC_CANONICAL;
  const sendAttributes = {
    'messaging.system': ctx.config.KAFKA_BROKER ? 'kafka' : 'redis',
    'messaging.operation.type': 'send',
    'messaging.destination.name': topic,
  };
  const breaker = new CircuitBreaker('emit');
  /**
   * Highest sequence number the sink has confirmed per root, in this process. A step whose send
   * succeeded but whose commit hit a Redis fault is retried in place: this keeps the retry from
   * sending the same messages again.
   */
  const published = new Map<string, bigint>();
  /** The generation this instance publishes under (stamped on every message). */
  let generation: Generation | undefined;

  async function publish(entries: Entry[]): Promise<void> {
    if (!breaker.allows()) throw new TransientError('sink circuit open');
    const sourceOf = new Map<OutMessage, Entry>(
      entries.map((e) => [
        {
          rootId: e.text('root'),
          sequenceNumber: BigInt(e.text('sequence_number')),
          value: e.bytes('value'),
          // Entries serialized before diffs existed have no message field: they are snapshots.
          ...(e.has('message') ? { messageName: e.text('message') } : {}),
          traceparent: e.text('traceparent'),
          ...(generation ? { generation: generation.id } : {}),
        },
        e,
      ]),
    );
    const messages = unpublished([...sourceOf.keys()], published);
    if (messages.length === 0) return;
    // One producer span per message under its entry's emit span; the message carries it.
    const sends = sendSpans(
      `publish ${topic}`,
      messages.map((m) => sourceOf.get(m)!),
      sendAttributes,
    );
    messages.forEach((m, i) => {
      m.traceparent = sends[i]!.traceparent;
    });
    try {
      await sink.publish(messages);
      for (const m of messages) published.set(m.rootId, m.sequenceNumber);
      // Emit's output is the sink, not a stream: the runtime's count of appends does not see it.
      metrics.entriesOut.inc({ stage: 'emit' }, messages.length);
      breaker.success();
    } catch (err) {
      for (const s of sends) s.fail(err);
      if (err instanceof FencedError) throw err; // another instance is active: not a sink fault
      breaker.failure();
      throw new TransientError(
        `publishing to the sink failed: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    } finally {
      for (const s of sends) s.end();
    }
  }

  return {
    name: 'emit',
    input: streams.serialized,
    singleton: true,
    order: { seq: 'sequence_number', key: 'root' },
    async activate(activation) {
      generation = activation.generation;
      let last: Map<string, bigint>;
      try {
        await sink.start();
        const tails = await sink.tails();
        await refuseForeignOutput(tails, generation, log);
        last = sequencesOf(tails);
      } catch (err) {
        if (err instanceof FencedError || err instanceof StateLostError) throw err;
        breaker.failure();
        throw new TransientError('sink unavailable at start', { cause: err });
      }
      published.clear();
      for (const [root, seq] of last) published.set(root, seq);
      breaker.success();
      return new Map([...last].map(([root, seq]) => [root, seq + 1n]));
    },
    async handle(entries, step) {
      const messages = entries.filter((e) => !e.has('skip'));
      for (const e of entries) {
        if (e.has('skip')) log.warn(entryLog(e), 'skipped: dead-lettered upstream');
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

/**
 * The sink emit publishes to: Kafka (a transactional producer of the emit role), or the Redis
 * stream sink without KAFKA_BROKER. Both are fenced by the stage's lease.
 */
export function openSink({ config, redis, keys, log, lease }: StageContext): Sink {
  const topic = config.KAFKA_TOPIC_CANONICAL;
  /** Asks Redis, not memory: a paused instance still remembers the lease it lost meanwhile. */
  const stillActive = async () => {
    const held = lease();
    return held !== undefined && (await redis.get(held.key)) === held.token;
  };
  log.info(
    config.KAFKA_BROKER
      ? { broker: redactUrl(config.KAFKA_BROKER), topic }
      : { stream: keys.stream(`out:${topic}`) },
    config.KAFKA_BROKER
      ? 'emit: publishing to Kafka'
      : 'emit: KAFKA_BROKER is not set; publishing to the Redis stream sink',
  );
  return config.KAFKA_BROKER
    ? metered(
        new KafkaSink({
          connection: kafkaConnection(config),
          topic,
          transactionalId: config.KAFKA_TRANSACTIONAL_ID || `atlas-emit-${config.ATLAS_PREFIX}-${topic}`,
          stillActive,
          log,
        }),
        'kafka',
      )
    : metered(new RedisSink(redis, keys.stream(`out:${topic}`), lease), 'redis');
}

/**
 * The output holds messages of a generation this Redis does not descend from: the state that
 * produced them is gone (Redis restarted without its data, restored from an old copy). Going on
 * would publish numbers again from 1 and graphs built from part of the history, so the whole
 * pipeline is stopped until `atlas recover`.
 */
async function refuseForeignOutput(
  tails: ReadonlyMap<string, Tail>,
  generation: Generation,
  log: Logger,
): Promise<void> {
  const lineage = await generation.lineage();
  const foreign = [...tails].filter(([, t]) => t.generation !== null && !lineage.has(t.generation));
  if (foreign.length === 0) return;
  const [root, tail] = foreign[0]!;
  const why = `the output holds ${foreign.length} root(s) published by generation ${tail.generation} (e.g. root ${root} up to sequence ${tail.seq}), which this Redis (generation ${generation.id}) does not descend from`;
  log.error({ roots: foreign.length, example: root }, `emit: ${why}`);
  await generation.declareLost(why);
  throw new StateLostError(why);
}
