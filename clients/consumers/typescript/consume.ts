/**
 * A consumer of `topology.canonical`: keeps the latest canonical graph per root from snapshots
 * (CanonicalGraphUpdated) and diffs (CanonicalGraphDiff, told apart by the `message-name`
 * header), checks each applied diff against its tree hash and against the tree it carries, and
 * reports gaps, repeats, diffs without a base and mismatches on stderr.
 *
 *   node clients/consumers/typescript/consume.ts --broker 127.0.0.1:9092 [--topic topology.canonical] [--until-end]
 *
 * It reads from the beginning every time (the topic is compacted: it holds every root's latest
 * graph), with a consumer group of its own that commits nothing. --until-end stops at the end
 * offsets seen at start and prints {latest, anomalies, counts} as JSON; without it, it follows
 * the topic and prints each applied update as a JSON line (a diff: root, sequence and changes).
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import kafkajs from 'kafkajs';
import { prepareKafkajs } from '../../../stages/emit/kafkajs-node24.ts';
import { decodeCanonicalGraphUpdated } from '../../../stages/serialize/decode.ts';
import { decodeCanonicalGraphDiff } from '../../../stages/serialize/diff-codec.ts';
import { type Anomaly, graphOf, LatestGraphs } from './latest-graphs.ts';

const DIFF_MESSAGE = 'topology.CanonicalGraphDiff';

const { values: args } = parseArgs({
  options: {
    broker: { type: 'string', default: process.env.KAFKA_BROKER ?? '127.0.0.1:9092' },
    topic: { type: 'string', default: 'topology.canonical' },
    'until-end': { type: 'boolean', default: false },
  },
});

// kafkajs ships no zstd codec and the pipeline compresses with zstd: without this every fetch fails.
prepareKafkajs();
const kafka = new kafkajs.Kafka({
  clientId: 'atlas-consumer-ts',
  brokers: args.broker.split(','),
  logLevel: kafkajs.logLevel.ERROR,
});

const anomalies: Anomaly[] = [];
const graphs = new LatestGraphs((anomaly) => {
  anomalies.push(anomaly);
  console.error(JSON.stringify({ anomaly }));
});

/**
 * Next offset to reach per partition before --until-end stops; empty partitions are done already.
 * These are high watermarks (kafkajs's admin lists no last stable offsets): a transaction still
 * open at start is waited for until it commits or aborts.
 */
async function endOffsets(): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(args.topic);
    return new Map(offsets.filter((o) => o.high !== o.low).map((o) => [o.partition, BigInt(o.high)]));
  } finally {
    await admin.disconnect();
  }
}

const pending = args['until-end'] ? await endOffsets() : undefined;
// The emit stage publishes in transactions: read committed (kafkajs's default, said out loud)
// so an aborted attempt's messages are never seen.
const consumer = kafka.consumer({ groupId: `atlas-consumer-${randomUUID()}`, readUncommitted: false });
let finish = (): void => undefined;
const finished = new Promise<void>((resolve) => {
  finish = resolve;
});
if (pending?.size === 0) finish();

await consumer.connect();
await consumer.subscribe({ topic: args.topic, fromBeginning: true });
await consumer.run({
  autoCommit: false,
  eachBatch: async ({ batch }) => {
    for (const message of batch.messages) {
      // A tombstone (no value) is not an update; the pipeline writes none, an operator might.
      if (!message.value) continue;
      const name = message.headers?.['message-name']?.toString();
      let print: unknown;
      try {
        if (name === DIFF_MESSAGE) {
          const diff = decodeCanonicalGraphDiff(message.value);
          const changes = diff.diff.changes.length;
          if (graphs.applyDiff(diff))
            print = { root_id: diff.rootId, sequence_number: Number(diff.sequenceNumber), changes };
        } else {
          const graph = graphOf(decodeCanonicalGraphUpdated(message.value));
          if (graphs.apply(graph)) print = graph;
        }
      } catch (err) {
        // Not a message of the contract: stop here rather than keep a graph that may be stale.
        console.error(`partition ${batch.partition} offset ${message.offset}: ${(err as Error).message}`);
        process.exit(1);
      }
      if (print && !pending) console.log(JSON.stringify(print));
    }
    if (!pending) return;
    // lastOffset() counts the transaction markers too, which are never delivered as messages.
    const end = pending.get(batch.partition);
    if (end !== undefined && BigInt(batch.lastOffset()) + 1n >= end) pending.delete(batch.partition);
    if (pending.size === 0) finish();
  },
});

if (pending) {
  await finished;
  await consumer.disconnect();
  console.log(
    JSON.stringify({ latest: Object.fromEntries(graphs.latest), anomalies, counts: graphs.counts }),
  );
} else {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void consumer.disconnect());
}
