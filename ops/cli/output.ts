/**
 * `atlas kafka init` and `atlas tail`: the output side, Kafka or the Redis stream sink.
 */
import { randomBytes } from 'node:crypto';
import kafkajs from 'kafkajs';
import type { Config } from '../../pipeline/config.ts';
import { parseEntries } from '../../pipeline/entry.ts';
import { keys } from '../../pipeline/keys.ts';
import { createLogger } from '../../pipeline/log.ts';
import { connectWorker } from '../../pipeline/redis.ts';
import { textView } from '../../stages/canonical/show.ts';
import { kafkaConnection } from '../../stages/emit/kafka-client.ts';
import { ensureTopic } from '../../stages/emit/kafka-sink.ts';
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

export interface TailOptions {
  fromBeginning?: boolean;
  root?: string;
  /** Stop once everything that was there at start has been printed. */
  exit?: boolean;
}

function kafkaClient(config: Config) {
  prepareKafkajs();
  return new kafkajs.Kafka({
    clientId: 'atlas-cli',
    ...kafkaConnection(config),
    // a failure ends the command with one message (atlas.ts), not a log line per retry
    logLevel: kafkajs.logLevel.NOTHING,
  });
}

export async function kafkaInit(config: Config): Promise<string> {
  if (!config.KAFKA_BROKER)
    return 'KAFKA_BROKER is not set: the pipeline publishes to the Redis stream sink; nothing to create';
  const admin = kafkaClient(config).admin();
  await admin.connect();
  try {
    const created = await ensureTopic(admin, { topic: config.KAFKA_TOPIC_CANONICAL });
    return `${config.KAFKA_TOPIC_CANONICAL}: ${created ? 'created' : 'exists already'}`;
  } finally {
    await admin.disconnect();
  }
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

/** `message` is the message-name header (Kafka) or field (Redis sink); a snapshot when absent. */
function print(bytes: Uint8Array, root: string | undefined, message: string | undefined): void {
  if (message === DIFF_MESSAGE) {
    const diff = decodeCanonicalGraphDiff(bytes);
    if (root && diff.rootId !== root) return;
    process.stdout.write(`${describeDiff(diff)}\n\n`);
    return;
  }
  const view = decodeCanonicalGraphUpdated(bytes);
  if (root && view.root_id !== root) return;
  process.stdout.write(`${describeUpdate(view)}\n\n`);
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

export async function tail(config: Config, opts: TailOptions): Promise<void> {
  if (config.KAFKA_BROKER) await tailKafka(config, opts);
  else await tailRedis(config, opts);
}

async function tailKafka(config: Config, opts: TailOptions): Promise<void> {
  const kafka = kafkaClient(config);
  const topic = config.KAFKA_TOPIC_CANONICAL;
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  await admin.disconnect();
  const unfinished = new Set([...ends].filter(([, high]) => high > 0n).map(([p]) => p));
  if (opts.exit && (!opts.fromBeginning || unfinished.size === 0)) return;
  // Read committed (the default, said out loud): emit publishes in transactions, and what an
  // open or aborted one holds is not published.
  const consumer = kafka.consumer({
    groupId: `atlas-tail-${randomBytes(4).toString('hex')}`,
    readUncommitted: false,
  });
  await consumer.connect();
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
      eachMessage: async ({ message }) => {
        if (message.value) print(message.value, opts.root, message.headers?.['message-name']?.toString());
      },
    });
    process.once('SIGINT', () => resolve());
  });
  await consumer.disconnect();
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
        print(e.bytes('value'), opts.root, e.has('message-name') ? e.text('message-name') : undefined);
      }
      if (entries.length > 0) from = entries[entries.length - 1]!.id;
      else if (opts.exit) break;
    }
  } finally {
    redis.disconnect();
  }
}
