/**
 * Bounded read of a topic: offsets [start, end) of each partition, committed messages only (read
 * committed: a transaction still open or aborted is never seen), with a throwaway consumer group (kafkajs has no group-less consumer) that commits
 * nothing and is deleted afterwards. kafkajs holds a seek until the partition is assigned and
 * applies it before the next fetch; reading more than the range is harmless anyway, since the
 * answer is a maximum.
 */
import { randomUUID } from 'node:crypto';
import type { Admin, Kafka, KafkaMessage } from 'kafkajs';
import { GENERATION_HEADER, recordTail, sequencesOf, type Tail } from './sink.ts';

export const SEQUENCE_HEADER = 'sequence-number';

export interface PartitionRange {
  partition: number;
  /** At most `end`. */
  start: bigint;
  /** The high watermark when the read began: where it stops. */
  end: bigint;
}

export interface ReadBack {
  kafka: Kafka;
  /** Deletes the consumer group afterwards. */
  admin: Admin;
  /** Names the throwaway consumer group: `<clientId>-read-back-<uuid>`. */
  clientId: string;
  topic: string;
  ranges: readonly PartitionRange[];
  /** Fails once no batch has arrived for this long: a long read is fine, a stuck one is not. */
  stallMs: number;
}

/** Highest sequence-number header per key (hex) in the ranges; later messages may add to it. */
export async function readLastSequences(read: ReadBack): Promise<Map<string, bigint>> {
  return sequencesOf(await readTails(read));
}

/** The message with the highest sequence-number header per key (hex) in the ranges. */
export async function readTails(read: ReadBack): Promise<Map<string, Tail>> {
  const last = new Map<string, Tail>();
  await readRanges(read, (_, message) => record(last, message));
  return last;
}

/**
 * Hands every committed message of the ranges to `each`, in offset order per partition (maybe a
 * few beyond `end`). The read of a partition ends at its last record, a transaction marker
 * included, so `end` may be the high watermark of a transactional topic.
 */
export async function readRanges(
  read: ReadBack,
  each: (partition: number, message: KafkaMessage) => void,
): Promise<void> {
  const { kafka, admin, clientId, topic, ranges, stallMs } = read;
  const pending = new Map(ranges.filter((r) => r.start < r.end).map((r) => [r.partition, r.end]));
  if (pending.size === 0) return;
  const groupId = `${clientId}-read-back-${randomUUID()}`;
  const consumer = kafka.consumer({
    groupId,
    // The default, said out loud: what an open transaction holds may still be aborted.
    readUncommitted: false,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 250,
  });
  const stall = watchdog(
    stallMs,
    () => `reading back ${topic}: partitions ${[...pending.keys()]} unfinished`,
  );
  const finished = new Promise<void>((resolve, reject) => {
    // Fires after every batch, also those kafkajs filters out before eachBatch (compacted, control).
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      stall.rearm();
      const end = pending.get(payload.partition);
      if (end !== undefined && BigInt(payload.lastOffset) + 1n >= end) pending.delete(payload.partition);
      if (pending.size === 0) resolve();
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error));
  });
  const consume = async () => {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) each(batch.partition, message);
      },
    });
    // A partition with nothing to read (start = end) waits at its end.
    for (const { partition, start } of ranges) consumer.seek({ topic, partition, offset: String(start) });
    await finished;
  };
  try {
    // `finished` too: a crash can come while consume() still waits on the broker.
    await Promise.race([consume(), finished, stall.expired]);
  } finally {
    stall.stop();
    await consumer.disconnect();
    // Best effort: the broker drops an empty group without offsets by itself, within 10 minutes.
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
}

/** A timer that fails `expired` unless re-armed in time. */
function watchdog(ms: number, what: () => string) {
  let fail: (err: Error) => void = () => undefined;
  const expired = new Promise<never>((_, reject) => {
    fail = reject;
  });
  let timer: NodeJS.Timeout | undefined;
  const rearm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => fail(new Error(`${what()}: no progress for ${ms} ms`)), ms);
  };
  rearm();
  return { expired, rearm, stop: () => clearTimeout(timer) };
}

function record(last: Map<string, Tail>, message: KafkaMessage): void {
  const text = headerText(message, SEQUENCE_HEADER) ?? '';
  // Not one of ours (someone else wrote to the topic): it has no place in the sequence.
  if (message.key?.length !== 16 || !/^[0-9]{1,20}$/.test(text)) return;
  recordTail(last, message.key.toString('hex'), {
    seq: BigInt(text),
    generation: headerText(message, GENERATION_HEADER),
    value: message.value,
  });
}

function headerText(message: KafkaMessage, name: string): string | null {
  const header = message.headers?.[name];
  const value = Array.isArray(header) ? header.at(-1) : header;
  return value === undefined ? null : String(value);
}
