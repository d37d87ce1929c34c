/**
 * Back-to-back Kafka transactions, as emit runs them (one transaction per batch, the next begun
 * as soon as the previous commit returns), for two retry schedules of the transactional
 * producer, alternated so both see the same machine. A transaction begun right after a commit is
 * refused with CONCURRENT_TRANSACTIONS until the broker has written the commit's markers; the
 * client's first retry delay decides how long every such send waits.
 *
 *   KAFKA_BROKER=127.0.0.1:9092 node load/bench-transactions.ts
 *
 * Settings: KAFKA_BROKER, TXN_ROUNDS (3), TXN_COUNT (100 per round), TXN_MESSAGES (10 per
 * transaction, 800 bytes each), TXN_DELAYS (first retry delays in ms to compare, 25,5).
 */
import kafkajs from 'kafkajs';
import { ensureTopic } from '../stages/emit/kafka-sink.ts';
import { prepareKafkajs } from '../stages/emit/kafkajs-node24.ts';

const BROKER = process.env.KAFKA_BROKER ?? '127.0.0.1:9092';
const ROUNDS = Number(process.env.TXN_ROUNDS ?? 3);
const COUNT = Number(process.env.TXN_COUNT ?? 100);
const MESSAGES = Number(process.env.TXN_MESSAGES ?? 10);
const DELAYS = (process.env.TXN_DELAYS ?? '25,5').split(',').map(Number);

const quantile = (v: number[], q: number): number =>
  [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * q))]!;

async function round(kafka: kafkajs.Kafka, topic: string, initialRetryTime: number): Promise<string> {
  const producer = kafka.producer({
    transactionalId: `bench-transactions-${initialRetryTime}`,
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
    retry: { retries: 9, initialRetryTime },
  });
  await producer.connect();
  await (await producer.transaction()).abort();
  const sends: number[] = [];
  const commits: number[] = [];
  const started = performance.now();
  for (let i = 0; i < COUNT; i++) {
    const transaction = await producer.transaction();
    const a = performance.now();
    await transaction.send({
      topic,
      acks: -1,
      messages: Array.from({ length: MESSAGES }, (_, j) => ({ key: `k${j}`, value: 'x'.repeat(800) })),
    });
    const b = performance.now();
    await transaction.commit();
    sends.push(b - a);
    commits.push(performance.now() - b);
  }
  const perS = (COUNT * 1000) / (performance.now() - started);
  await producer.disconnect();
  return `first retry ${initialRetryTime} ms: ${perS.toFixed(0)} transactions/s; send p50 ${quantile(sends, 0.5).toFixed(1)} p90 ${quantile(sends, 0.9).toFixed(1)} ms; commit p50 ${quantile(commits, 0.5).toFixed(1)} p90 ${quantile(commits, 0.9).toFixed(1)} ms`;
}

prepareKafkajs();
const kafka = new kafkajs.Kafka({
  brokers: [BROKER],
  clientId: 'bench-transactions',
  logLevel: kafkajs.logLevel.NOTHING,
});
const topic = `bench-transactions-${Date.now()}`;
const admin = kafka.admin();
await admin.connect();
try {
  await ensureTopic(admin, { topic, partitions: 3 });
  for (let r = 0; r < ROUNDS; r++) for (const delay of DELAYS) console.log(await round(kafka, topic, delay));
} finally {
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
}
