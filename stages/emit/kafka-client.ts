/**
 * The one place that turns settings into a kafkajs connection (brokers, TLS, SASL): the emit
 * sink, `atlas tail` and `atlas kafka init` all connect the same way.
 */
import { readFileSync } from 'node:fs';
import kafkajs, { type Kafka, type KafkaConfig, type Producer, type SASLOptions } from 'kafkajs';
import type { Config } from '../../pipeline/config.ts';

export type KafkaTarget = Pick<
  Config,
  | 'KAFKA_BROKER'
  | 'KAFKA_TLS'
  | 'KAFKA_TLS_CA_FILE'
  | 'KAFKA_SASL_MECHANISM'
  | 'KAFKA_SASL_USERNAME'
  | 'KAFKA_SASL_PASSWORD'
>;

export type KafkaConnection = Pick<KafkaConfig, 'brokers' | 'ssl' | 'sasl'>;

export function kafkaConnection(target: KafkaTarget): KafkaConnection {
  return {
    brokers: target.KAFKA_BROKER.split(',').map((b) => b.trim()),
    ...tls(target),
    ...sasl(target),
  };
}

/** A private CA replaces the system's trust store; without one, the system CAs are used. */
function tls(target: KafkaTarget): Pick<KafkaConfig, 'ssl'> {
  if (!target.KAFKA_TLS) return {};
  if (!target.KAFKA_TLS_CA_FILE) return { ssl: true };
  return { ssl: { ca: [readFileSync(target.KAFKA_TLS_CA_FILE, 'utf8')] } };
}

function sasl(target: KafkaTarget): Pick<KafkaConfig, 'sasl'> {
  const mechanism = target.KAFKA_SASL_MECHANISM;
  if (!mechanism) return {};
  const options = {
    mechanism,
    username: target.KAFKA_SASL_USERNAME,
    password: target.KAFKA_SASL_PASSWORD,
  } as SASLOptions;
  return { sasl: options };
}

/**
 * A transactional producer, initialised: kafkajs initialises the transactional id lazily, at the
 * first transaction, so an empty one (no partition, so no EndTxn is sent) runs InitProducerId now —
 * which fences older instances with the same id and settles their open transaction.
 */
export async function openTransactionalProducer(
  kafka: Kafka,
  transactionalId: string,
  retries: number,
): Promise<Producer> {
  const producer = kafka.producer({
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    // Java-compatible murmur2 of the key: other clients place a key the same way.
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
    // A transaction begun right after the previous commit is refused (CONCURRENT_TRANSACTIONS)
    // until the broker has written that commit's markers, a few ms: retry after 5 ms, not the
    // client's 100 ms (nor 25: `node load/bench-transactions.ts` ran back-to-back transactions
    // 1.7–1.9× as fast with 5, send p90 11 ms instead of 33). Two retries more than asked keep
    // the give-up time of the 25 ms schedule (seven retries: ~3 s; nine from 5 ms: ~2.6 s).
    retry: { retries: retries + 2, initialRetryTime: 5 },
  });
  try {
    await producer.connect();
    await (await producer.transaction()).abort();
  } catch (err) {
    await producer.disconnect().catch(() => undefined);
    throw err;
  }
  return producer;
}

/**
 * Kafka error codes meaning a newer producer epoch of our transactional id exists. The broker
 * answers kafkajs's (older) request versions with INVALID_PRODUCER_EPOCH, never PRODUCER_FENCED.
 */
const FENCED_CODES = new Set([
  47, // INVALID_PRODUCER_EPOCH
  52, // TRANSACTION_COORDINATOR_FENCED
]);

/** Whether a kafkajs error, or one it wraps (retries exceeded, aggregated), is a fencing. */
export function isFenced(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 5) return false;
  const e = err as Error & { code?: unknown; originalError?: unknown; errors?: unknown };
  if (typeof e.code === 'number' && FENCED_CODES.has(e.code)) return true;
  const inner = [e.cause, e.originalError, ...(Array.isArray(e.errors) ? e.errors : [])];
  return inner.some((c) => isFenced(c, depth + 1));
}
