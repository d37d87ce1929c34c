/**
 * The bare baseline of `bench:e2e`: what this design (six stream hops on Redis, then a Kafka
 * transaction) reaches on this machine with no stage logic. Same door routes, same streams,
 * consumer groups and key layout as the pipeline, entries of the pipeline's sizes, one script
 * call per batch (ack the input, append the outputs: load/bare-hop.lua), and at the end a
 * transactional producer with emit's settings (idempotent, one request in flight, acks=all,
 * zstd, murmur2 partitioner). Every figure of the pipeline is quoted as a ratio to this one,
 * measured in the same run.
 *
 *   node load/bare-pipeline.ts                        # all six hops in one process (like `atlas up`)
 *   node load/bare-pipeline.ts ingest                 # one hop (like `atlas run ingest`)
 *
 * Settings (environment, as the pipeline's): REDIS_URL, KAFKA_BROKER, KAFKA_TOPIC_CANONICAL,
 * ATLAS_PREFIX, ATLAS_HTTP_PORT, ATLAS_BATCH_SIZE (200), ATLAS_BLOCK_MS (1000); BARE_SIZES: the
 * mean entry bytes of each stream and of a Kafka message, e.g.
 * `validated=700,transitive=900,canonical=1500,serialized=800,kafka=300` (bench:e2e passes the
 * ones it measured on the pipeline in the same run; defaults below).
 *
 * The minimal work per entry: the door parses the request (fastify) and writes the envelope's
 * fields; validate reads the root and cursor out of the payload's JSON; serialize writes a
 * protobuf value carrying the cursor (field 5.4, as CanonicalGraphUpdated's meta.cursor, which
 * bench:e2e reads); every hop pads its output to the stream's size. Stops on SIGTERM/SIGINT.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify from 'fastify';
import type { Redis } from 'ioredis';
import kafkajs, { type Producer } from 'kafkajs';
import protobuf from 'protobufjs/minimal.js';
import { keys as keysFor } from '../pipeline/keys.ts';
import { createLogger } from '../pipeline/log.ts';
import { connectFailFast, connectWorker, whenReady } from '../pipeline/redis.ts';
import { prepareKafkajs } from '../stages/emit/kafkajs-node24.ts';
import { SEQUENCE_HEADER } from '../stages/emit/read-back.ts';
import { traceparentFor } from '../stages/ingest/accept.ts';
import { streams } from '../stages/streams.ts';

const env = process.env;
const REDIS_URL = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = env.ATLAS_PREFIX ?? 'atlas';
const BATCH = Number(env.ATLAS_BATCH_SIZE ?? 200);
const BLOCK_MS = Number(env.ATLAS_BLOCK_MS ?? 1000);
const keys = keysFor(PREFIX);

/** Mean entry bytes (field names and values) per stream, and of a Kafka message's value. */
const SIZES: Record<string, number> = {
  validated: 700,
  transitive: 1400,
  canonical: 1600,
  serialized: 700,
  kafka: 250,
  ...Object.fromEntries(
    (env.BARE_SIZES ?? '')
      .split(',')
      .filter(Boolean)
      .map((kv) => {
        const [k, v] = kv.split('=');
        return [k!, Number(v)];
      }),
  ),
};

/** The hops as the pipeline's stages: input stream (its group is the stage name), output stream. */
const HOPS = {
  validate: [streams.ingest, streams.validated],
  transitive: [streams.validated, streams.transitive],
  canonical: [streams.transitive, streams.canonical],
  serialize: [streams.canonical, streams.serialized],
  emit: [streams.serialized, null],
} as const;
type HopName = keyof typeof HOPS;
const ALL = ['ingest', ...Object.keys(HOPS)] as const;

const HOP_LUA = readFileSync(join(import.meta.dirname, 'bare-hop.lua'), 'utf8');

const log = createLogger('silent');
const connections: Redis[] = [];
/** The door's client fails fast (as the door's); the hops' block in reads (as the workers'). */
function connect(name: string, door = false): Redis {
  const target = { REDIS_URL, REDIS_TLS_CA_FILE: env.REDIS_TLS_CA_FILE ?? '' };
  const redis = door ? connectFailFast(target, name, log) : connectWorker(target, name, log);
  redis.defineCommand('bareHop', { lua: HOP_LUA, numberOfKeys: 2 });
  connections.push(redis);
  return redis;
}

type Arg = string | number | Buffer;
function hop(redis: Redis, input: string, output: string, group: string, acks: string[], outs: Arg[][]) {
  const args: Arg[] = [group, acks.length, ...acks, outs.length];
  for (const fields of outs) args.push(fields.length, ...fields);
  return (redis as unknown as { bareHop(...a: Arg[]): Promise<number> }).bareHop(input, output, ...args);
}

/** A field `data` that brings an entry of `have` bytes up to `want`. */
const fillers = new Map<number, string>();
function pad(fields: Arg[], want: number): Arg[] {
  let have = 0;
  for (const f of fields) have += typeof f === 'number' ? String(f).length : f.length;
  const missing = Math.max(0, want - have - 4);
  let filler = fillers.get(missing);
  if (filler === undefined) {
    filler = 'x'.repeat(missing);
    fillers.set(missing, filler);
  }
  fields.push('data', filler);
  return fields;
}

// ---------------------------------------------------------------------------------------------
// The door

interface Body {
  event_id: string;
  event_type: string;
  source: string;
  timestamp: number;
  version: number;
  payload: unknown;
}

function entryOf(e: Body, requestId: string, receivedAt: string, traceparent: string): Arg[] {
  return [
    'event_id',
    e.event_id,
    'event_type',
    e.event_type,
    'version',
    String(e.version),
    'source',
    e.source,
    'timestamp',
    String(e.timestamp),
    'payload',
    JSON.stringify(e.payload),
    'received_at',
    receivedAt,
    'traceparent',
    traceparent,
    'request_id',
    requestId,
  ];
}

async function startDoor(): Promise<() => Promise<void>> {
  const redis = connect('bare-door', true);
  await whenReady(redis, 5000);
  const app = Fastify({ logger: false, genReqId: () => randomUUID() });
  const ingest = keys.stream(streams.ingest);
  const append = (events: Body[], requestId: string) => {
    const at = String(Date.now());
    const traceparent = traceparentFor(undefined);
    return hop(
      redis,
      ingest,
      ingest,
      'ingest',
      [],
      events.map((e) => entryOf(e, requestId, at, traceparent)),
    );
  };
  app.post<{ Body: Body }>('/events', async (req, reply) => {
    await append([req.body], req.id);
    return reply.code(202).send({ event_id: req.body.event_id, request_id: req.id });
  });
  app.post<{ Body: Body[] }>('/events/batch', async (req, reply) => {
    await append(req.body, req.id);
    return reply.code(202).send({
      results: req.body.map((e) => ({ event_id: e.event_id, duplicate: false })),
      request_id: req.id,
    });
  });
  app.get('/health', async () => ({ status: 'ok' }));
  await app.listen({ port: Number(env.ATLAS_HTTP_PORT ?? 8080), host: '127.0.0.1' });
  return () => app.close();
}

// ---------------------------------------------------------------------------------------------
// The hops

type Read = Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;

/** name → value of an entry's flat field list. */
function field(fields: Buffer[], name: string): Buffer | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i]!.toString() === name) return fields[i + 1];
  return undefined;
}

/** What each hop writes for one input entry. */
function outputOf(name: HopName, fields: Buffer[]): Arg[] {
  const receivedAt = field(fields, 'received_at')!;
  if (name === 'validate') {
    const payload = JSON.parse(field(fields, 'payload')!.toString()) as {
      source_space_id: string;
      meta: { cursor: string };
    };
    return pad(
      ['root', payload.source_space_id, 'cursor', payload.meta.cursor, 'received_at', receivedAt],
      SIZES.validated!,
    );
  }
  const root = field(fields, 'root')!;
  const cursor = field(fields, 'cursor')!;
  if (name === 'serialize') {
    const value = messageValue(cursor.toString(), SIZES.kafka!);
    return pad(
      ['root', root, 'cursor', cursor, 'received_at', receivedAt, 'value', value],
      SIZES.serialized!,
    );
  }
  return pad(['root', root, 'cursor', cursor, 'received_at', receivedAt], SIZES[HOPS[name][1]!]!);
}

/** Field 5 (meta) holding field 4 (cursor), then filler bytes in field 15, `size` bytes in all. */
function messageValue(cursor: string, size: number): Buffer {
  const meta = protobuf.Writer.create()
    .uint32((4 << 3) | 2)
    .string(cursor)
    .finish();
  // minus the two tags and lengths (at most 8 bytes for these sizes)
  const filler = new Uint8Array(Math.max(0, size - meta.length - 8));
  const bytes = protobuf.Writer.create()
    .uint32((5 << 3) | 2)
    .bytes(meta)
    .uint32((15 << 3) | 2)
    .bytes(filler)
    .finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

async function runHop(name: HopName, stopping: () => boolean): Promise<void> {
  const redis = connect(`bare-${name}`);
  await whenReady(redis, 5000);
  const [inName, outName] = HOPS[name];
  const input = keys.stream(inName);
  const output = outName ? keys.stream(outName) : input;
  await redis.xgroup('CREATE', input, name, '0', 'MKSTREAM').catch(() => undefined);
  const emitter = name === 'emit' ? new Emitter() : undefined;
  const consumer = `${name}-${process.pid}`;
  // After a failed step its batch is still pending under our name: read that again first.
  let from = '>';
  while (!stopping()) {
    try {
      const read = (await redis.xreadgroupBuffer(
        'GROUP',
        name,
        consumer,
        'COUNT',
        BATCH,
        'BLOCK',
        BLOCK_MS,
        'STREAMS',
        input,
        from,
      )) as Read;
      const entries = read?.[0]?.[1] ?? [];
      if (entries.length === 0) {
        from = '>';
        continue;
      }
      const ids = entries.map(([id]) => id.toString());
      if (emitter) {
        await emitter.publish(entries);
        await redis.xack(input, name, ...ids);
      } else {
        await hop(
          redis,
          input,
          output,
          name,
          ids,
          entries.map(([, fields]) => outputOf(name, fields)),
        );
      }
    } catch (err) {
      // A timeout on a loaded machine: the bench counts each cursor once, so a repeat is harmless.
      console.error(
        `bare ${name}: ${err instanceof Error ? err.message : String(err)}; reading own pending again`,
      );
      from = '0';
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await emitter?.stop();
}

// ---------------------------------------------------------------------------------------------
// Kafka, as emit's sink sets it up (stages/emit/kafka-sink.ts)

async function startProducer(): Promise<Producer> {
  prepareKafkajs();
  const kafka = new kafkajs.Kafka({
    clientId: 'bare-emit',
    brokers: (env.KAFKA_BROKER ?? '127.0.0.1:9092').split(','),
    logLevel: kafkajs.logLevel.NOTHING,
  });
  const producer = kafka.producer({
    transactionalId: `bare-emit-${PREFIX}`,
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
    retry: { retries: 7, initialRetryTime: 25 },
  });
  await producer.connect();
  return producer;
}

/**
 * A failed transaction is sent again with a new producer, as emit retries a step: the bench
 * counts each cursor once, so a message that landed twice changes nothing it measures.
 */
class Emitter {
  private producer: Promise<Producer> | undefined;

  async publish(entries: Array<[Buffer, Buffer[]]>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.producer ??= startProducer();
      try {
        return await publish(await this.producer, entries);
      } catch (err) {
        const failed = this.producer;
        this.producer = undefined;
        await failed.then((p) => p.disconnect()).catch(() => undefined);
        if (attempt >= 10) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  async stop(): Promise<void> {
    await this.producer?.then((p) => p.disconnect()).catch(() => undefined);
  }
}

const HEADERS = {
  'content-type': 'application/x-protobuf',
  'message-name': 'topology.CanonicalGraphUpdated',
  'schema-version': '1',
};

async function publish(producer: Producer, entries: Array<[Buffer, Buffer[]]>): Promise<void> {
  const transaction = await producer.transaction();
  try {
    await transaction.send({
      topic: env.KAFKA_TOPIC_CANONICAL ?? 'atlas.canonical',
      acks: -1,
      compression: kafkajs.CompressionTypes.ZSTD,
      messages: entries.map(([id, fields]) => ({
        key: Buffer.from(field(fields, 'root')!.toString(), 'hex'),
        value: field(fields, 'value')!,
        headers: { ...HEADERS, [SEQUENCE_HEADER]: id.toString() },
      })),
    });
    await transaction.commit();
  } catch (err) {
    await transaction.abort().catch(() => undefined);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const names = wanted.length > 0 ? wanted : [...ALL];
  for (const n of names) if (!ALL.includes(n as (typeof ALL)[number])) throw new Error(`no hop ${n}`);
  let stopped = false;
  const closeDoor = names.includes('ingest') ? await startDoor() : undefined;
  const hops = names.filter((n): n is HopName => n !== 'ingest').map((n) => runHop(n, () => stopped));
  const stop = async () => {
    stopped = true;
    await closeDoor?.();
    await Promise.allSettled(hops);
    for (const c of connections) c.disconnect();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
  // A hop that fails ends the process: the bench sees it exit and reports it.
  await Promise.all(hops);
}

await main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
