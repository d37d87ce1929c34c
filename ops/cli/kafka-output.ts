/**
 * What `atlas kafka init`, `atlas tail` and `atlas cleanup --topic` do on the output side, Kafka or
 * the Redis stream sink. Loaded only by those commands (kafkajs and the decoder are heavy).
 */
import { randomBytes } from 'node:crypto';
import kafkajs, { type Admin } from 'kafkajs';
import type { Config } from '../../pipeline/config.ts';
import { parseEntries } from '../../pipeline/entry.ts';
import { keys } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { connectWorker } from '../../pipeline/redis.ts';
import { textView } from '../../stages/canonical/show.ts';
import { kafkaConnection } from '../../stages/emit/kafka-client.ts';
import { ensureTopic, topicSpec } from '../../stages/emit/kafka-sink.ts';
import { prepareKafkajs } from '../../stages/emit/kafkajs-node24.ts';
import {
  type CanonicalGraphUpdatedView,
  decodeCanonicalGraphUpdated,
} from '../../stages/serialize/decode.ts';
import {
  type CanonicalGraphDiffView,
  DIFF_MESSAGE,
  decodeCanonicalGraphDiff,
} from '../../stages/serialize/diff-codec.ts';
import { toWire } from '../../stages/topology/graph-wire.ts';
import { fromJsonTree } from '../../stages/topology/tree.ts';
import { warn } from './output.ts';

export interface TailOptions {
  fromBeginning?: boolean;
  root?: string | undefined;
  /** Stop once everything that was there at start has been printed. */
  exit?: boolean;
  json?: boolean;
}

/** Where a message was read: a Kafka partition and offset, or a Redis stream entry id. */
type Position = { partition: number; offset: string } | { stream: string; id: string };

function kafkaClient(config: Config) {
  prepareKafkajs();
  return new kafkajs.Kafka({
    clientId: 'atlas-cli',
    ...kafkaConnection(config),
    // a failure ends the command with one message (atlas.ts), not a log line per retry
    logLevel: kafkajs.logLevel.NOTHING,
  });
}

async function withAdmin<T>(config: Config, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafkaClient(config).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

export interface TopicShape {
  partitions: number;
  replicationFactor: number;
}

/** Creates the output topic, or checks the one there: each setting that differs is a warning. */
export async function kafkaInit(
  config: Config,
  shape: TopicShape,
): Promise<{ text: string; warnings: string[] }> {
  if (!config.KAFKA_BROKER)
    return {
      text: 'KAFKA_BROKER is not set: the pipeline publishes to the Redis stream sink; nothing to create',
      warnings: [],
    };
  const topic = config.KAFKA_TOPIC_CANONICAL;
  return withAdmin(config, async (admin) => {
    if (await ensureTopic(admin, { topic, ...shape }))
      return {
        text: `${topic}: created (partitions=${shape.partitions}, replication-factor=${shape.replicationFactor})`,
        warnings: [],
      };
    return { text: `${topic}: exists already`, warnings: await topicDifferences(admin, topic, shape) };
  });
}

async function topicDifferences(admin: Admin, topic: string, shape: TopicShape): Promise<string[]> {
  const wanted = topicSpec({ topic, ...shape });
  const [meta] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
  const partitions = meta?.partitions.length ?? 0;
  const replicas = meta?.partitions[0]?.replicas.length ?? 0;
  const differences: string[] = [];
  if (partitions !== wanted.numPartitions)
    differences.push(`partitions: ${partitions} on the broker, ${wanted.numPartitions} wanted`);
  if (replicas !== wanted.replicationFactor)
    differences.push(`replication-factor: ${replicas} on the broker, ${wanted.replicationFactor} wanted`);
  const described = await admin.describeConfigs({
    resources: [{ type: kafkajs.ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false,
  });
  const actual = new Map(
    (described.resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue] as const),
  );
  for (const { name, value } of wanted.configEntries)
    if (actual.get(name) !== value)
      differences.push(`${name}: ${actual.get(name) ?? '(unset)'} on the broker, ${value} wanted`);
  return differences.map((d) => `topic ${topic} differs from the pipeline's settings: ${d}`);
}

export async function topicExists(config: Config): Promise<boolean> {
  return withAdmin(config, async (admin) =>
    (await admin.listTopics()).includes(config.KAFKA_TOPIC_CANONICAL),
  );
}

export async function deleteTopic(config: Config): Promise<void> {
  await withAdmin(config, (admin) => admin.deleteTopics({ topics: [config.KAFKA_TOPIC_CANONICAL] }));
}

export function describeUpdate(view: CanonicalGraphUpdatedView): string {
  const tree = fromJsonTree(view.tree);
  const wire = toWire({
    root_id: view.root_id,
    tree,
    canonical_space_ids: view.canonical_space_ids,
    meta: {
      block_number: view.meta.block_number,
      block_timestamp: view.meta.created_at,
      tx_hash: '',
      cursor: view.meta.cursor,
    },
  });
  return textView(wire, Number(view.sequence_number));
}

/** One line per diff, then the tree it carries, if any. */
export function describeDiff(view: CanonicalGraphDiffView): string {
  const count = (type: string) => view.diff.changes.filter((c) => c.type === type).length;
  const line =
    `root ${view.rootId} diff #${view.sequenceNumber} on #${view.baseSequenceNumber}: ` +
    `${count('added')} added, ${count('removed')} removed, ${count('moved')} moved, ` +
    `attachments +${view.diff.attachmentsAdded.length} -${view.diff.attachmentsRemoved.length}, ` +
    `tree hash ${view.treeHash}, block ${view.meta.block_number}`;
  return view.snapshot ? `${line}\n${describeUpdate(view.snapshot)}` : line;
}

/** `message` is the message-name header (Kafka) or field (Redis sink); a snapshot when absent. */
function print(bytes: Uint8Array, at: Position, opts: TailOptions, message: string | undefined): void {
  if (message === DIFF_MESSAGE) {
    const diff = decodeCanonicalGraphDiff(bytes);
    if (opts.root && diff.rootId !== opts.root) return;
    if (opts.json) process.stdout.write(`${JSON.stringify({ ...at, message, ...diff })}\n`);
    else process.stdout.write(`${describeDiff(diff)}\n\n`);
    return;
  }
  const view = decodeCanonicalGraphUpdated(bytes);
  if (opts.root && view.root_id !== opts.root) return;
  // --json: one object per line (NDJSON), where it was read first
  if (opts.json) process.stdout.write(`${JSON.stringify({ ...at, ...view })}\n`);
  else process.stdout.write(`${describeUpdate(view)}\n\n`);
}

export async function tail(config: Config, opts: TailOptions): Promise<void> {
  if (config.KAFKA_BROKER) await tailKafka(config, opts);
  else await tailRedis(config, opts);
}

/**
 * kafkajs reads only through a consumer group. The group is a throwaway: it never commits an
 * offset and is deleted on the way out, so no `atlas tail` leaves a group on the broker (a kill -9
 * can: an empty group without offsets, which the broker drops by itself).
 */
async function tailKafka(config: Config, opts: TailOptions): Promise<void> {
  const kafka = kafkaClient(config);
  const topic = config.KAFKA_TOPIC_CANONICAL;
  const ends = await withAdmin(
    config,
    async (admin) =>
      new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)])),
  );
  const unfinished = new Set([...ends].filter(([, high]) => high > 0n).map(([p]) => p));
  if (opts.exit && (!opts.fromBeginning || unfinished.size === 0)) return;
  const groupId = `atlas-tail-${randomBytes(4).toString('hex')}`;
  // Read committed (the default, said out loud): emit publishes in transactions, and what an
  // open or aborted one holds is not published.
  const consumer = kafka.consumer({ groupId, readUncommitted: false });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: opts.fromBeginning === true });
    await new Promise<void>((resolve) => {
      // --exit: done once every partition has been read to its end as it was at the start. The last
      // record may be a transaction marker, which only this event reports (eachMessage never sees it).
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
        if (BigInt(payload.lastOffset) + 1n >= (ends.get(payload.partition) ?? 0n))
          unfinished.delete(payload.partition);
        if (opts.exit && unfinished.size === 0) resolve();
      });
      void consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          if (message.value)
            print(
              message.value,
              { partition, offset: message.offset },
              opts,
              message.headers?.['message-name']?.toString(),
            );
        },
      });
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
  } finally {
    await consumer.disconnect();
    // a group that stays behind is said, not hidden (a user without the right to delete groups)
    await withAdmin(config, (admin) => admin.deleteGroups([groupId])).catch((err: Error) =>
      warn(`consumer group ${groupId} left on the broker: ${err.message}`),
    );
  }
}

async function tailRedis(config: Config, opts: TailOptions): Promise<void> {
  const redis = connectWorker(config, 'atlas-tail', createLogger('silent'));
  const stream = keys(config.ATLAS_PREFIX).stream(`out:${config.KAFKA_TOPIC_CANONICAL}`);
  let from = opts.fromBeginning ? '0' : '$';
  let stopping = false;
  process.once('SIGINT', () => {
    stopping = true;
  });
  try {
    while (!stopping) {
      const block = opts.exit ? [] : ['BLOCK', 1000];
      const reply = (await redis.callBuffer('XREAD', 'COUNT', 100, ...block, 'STREAMS', stream, from)) as
        | [Buffer, [Buffer, Buffer[]][]][]
        | null;
      const entries = parseEntries(reply?.[0]?.[1] ?? null);
      for (const e of entries) {
        const message = e.has('message-name') ? e.text('message-name') : undefined;
        print(e.bytes('value'), { stream, id: e.id }, opts, message);
      }
      if (entries.length > 0) from = entries[entries.length - 1]!.id;
      else if (opts.exit) break;
    }
  } finally {
    redis.disconnect();
  }
}
