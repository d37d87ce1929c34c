/**
 * The gRPC door: `atlas.bus.Bus` served beside the HTTP door in the ingest component. Every
 * publish goes through the HTTP door's own accept path (app.door: token, rate, Redis memory,
 * backpressure, envelope checks, dedup, the atomic append); subscribers share the door's
 * Subscriptions with SSE.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import type { Config } from '../../pipeline/config.ts';
import { StateLostError } from '../../pipeline/generation.ts';
import type { Logger } from '../../pipeline/log.ts';
import { isTransientRedisError } from '../../pipeline/redis.ts';
import { isOutOfMemory } from '../../pipeline/redis-memory.ts';
import type { atlas } from '../../proto/gen/bus.js';
import type { Accepted } from '../ingest/accept.ts';
import type { Call, Door } from '../ingest/door.ts';
import { checkEnvelope, type Envelope } from '../ingest/envelope.ts';
import { type Extras, invalidEnvelope, wireName } from '../ingest/errors.ts';
import { ingestMetrics } from '../ingest/metrics.ts';
import { envelopeOf } from '../ingest/protobuf.ts';
import {
  type Delivery,
  SubscribeError,
  type Subscription,
  type Subscriptions,
} from '../subscribe/subscriptions.ts';
import { busService } from './service.ts';

type Bus = typeof atlas.bus;
type EnvelopeMsg = InstanceType<Bus['Envelope']>;
type PublishAck = atlas.bus.PublishAck.$Properties;

const SHUTDOWN_GRACE_MS = 2000;

export interface GrpcDoor {
  port: number;
  stop(): Promise<void>;
}

interface Parts {
  config: Config;
  door: Door;
  subscriptions: Subscriptions;
  log: Logger;
}

export async function startGrpc(parts: Parts, port: number, host: string): Promise<GrpcDoor> {
  const server = new Server({
    'grpc.max_receive_message_length': parts.config.ATLAS_GRPC_MAX_MESSAGE_BYTES,
  });
  server.addService(busService, handlers(parts));
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    port: bound,
    stop: async () => {
      await parts.subscriptions.close();
      // Calls get a moment to finish; a client that never ends its stream cannot hold the stop.
      const grace = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      clearTimeout(grace);
    },
  };
}

/** A refusal as gRPC sees it: the door's status mapped, the wire name and field errors in details. */
class Refusal extends Error {
  readonly code: status;
  readonly wire: string;
  readonly metadata?: Record<string, string>;
  constructor(code: status, wire: string, message: string, metadata?: Record<string, string>) {
    super(message);
    this.code = code;
    this.wire = wire;
    if (metadata) this.metadata = metadata;
  }
}

const byHttpStatus: Record<number, status> = {
  400: status.INVALID_ARGUMENT,
  401: status.UNAUTHENTICATED,
  413: status.RESOURCE_EXHAUSTED,
  429: status.RESOURCE_EXHAUSTED,
};

function refusalOf(err: unknown, log: Logger): Refusal {
  if (err instanceof Refusal) return err;
  if (err instanceof SubscribeError)
    return err.code === 'too_many_subscribers'
      ? new Refusal(status.RESOURCE_EXHAUSTED, err.code, err.message)
      : new Refusal(status.INVALID_ARGUMENT, err.code, err.message);
  if (err instanceof StateLostError) {
    log.error({ reason: err.message }, 'pipeline state lost in Redis: refusing events until `atlas recover`');
    return new Refusal(
      status.UNAVAILABLE,
      'state_lost',
      'the pipeline lost its state in Redis; nothing was accepted',
    );
  }
  // Redis refused the write for want of memory (between two readings of the guard): nothing went in.
  if (isOutOfMemory(err))
    return new Refusal(status.RESOURCE_EXHAUSTED, 'redis_memory', 'Redis is out of memory; retry later', {
      'retry-after': '1',
    });
  if (isTransientRedisError(err))
    return new Refusal(
      status.UNAVAILABLE,
      'unavailable',
      'Redis is unreachable or slow; retry with the same event_id',
    );
  const e = err as Error & Extras & { statusCode?: number; code?: string };
  const code = e.statusCode ? byHttpStatus[e.statusCode] : undefined;
  if (code === undefined || !e.statusCode) {
    log.error({ err }, 'gRPC call failed');
    return new Refusal(status.INTERNAL, 'error', 'internal error');
  }
  const fields = e.errors?.map(
    (f) => `${f.index === undefined ? '' : `[${f.index}] `}${f.field}: ${f.message}`,
  );
  const message = fields?.length ? `${e.message}: ${fields.join('; ')}` : e.message;
  return new Refusal(code, wireName(e.code, e.statusCode), message, e.headers);
}

/** The call's status; trailers carry the door's wire name (`atlas-error`) and any retry-after. */
function asServiceError(refusal: Refusal) {
  ingestMetrics.rejected.inc({ reason: refusal.wire });
  const metadata = new Metadata();
  metadata.set('atlas-error', refusal.wire);
  for (const [k, v] of Object.entries(refusal.metadata ?? {})) metadata.set(k, v);
  return { code: refusal.code, details: refusal.message, metadata };
}

const authorization = (md: Metadata): string | undefined => {
  const value = md.get('authorization')[0];
  return typeof value === 'string' ? value : undefined;
};

function handlers({ door, subscriptions, log, config }: Parts) {
  const admit = (md: Metadata, write: boolean) => {
    const refused = door.admit(authorization(md), write);
    if (refused) throw refused;
  };
  const maxDepth = config.ATLAS_MAX_JSON_DEPTH;
  /** The JSON envelope of a protobuf one, checked like POST /events checks it. */
  const checked = (e: EnvelopeMsg): Envelope => {
    const result = checkEnvelope(envelopeOf(e, maxDepth));
    if ('errors' in result) throw invalidEnvelope(result.errors);
    return result.envelope;
  };
  const callOf = (md: Metadata, route: string) => {
    const traceparent = md.get('traceparent')[0];
    return {
      requestId: randomUUID(),
      traceparent: typeof traceparent === 'string' ? traceparent : undefined,
      method: 'POST',
      route,
    };
  };
  /** A stream of publishes: admitted as a whole first, then each batch (rate, Redis memory) as it goes. */
  const publisher = (stream: PublisherParts['stream'], md: Metadata, route: string) => {
    admit(md, true);
    return new Publisher({
      stream,
      door,
      admit: () => admit(md, true),
      checked,
      call: () => callOf(md, route),
      maxBatch: config.ATLAS_MAX_BATCH_EVENTS,
      log,
    });
  };

  return {
    publish: (call: ServerUnaryCall<EnvelopeMsg, PublishAck>, callback: sendUnaryData<PublishAck>) => {
      (async () => {
        admit(call.metadata, true);
        const [accepted] = await door.accept(callOf(call.metadata, 'grpc:Publish'), [checked(call.request)]);
        return ackOf(accepted as Accepted);
      })().then(
        (ack) => callback(null, ack),
        (err: unknown) => callback(asServiceError(refusalOf(err, log))),
      );
    },

    publishStream: (
      call: ServerReadableStream<EnvelopeMsg, atlas.bus.PublishAcks.$Properties>,
      callback: sendUnaryData<atlas.bus.PublishAcks.$Properties>,
    ) => {
      const acks: PublishAck[] = [];
      let pub: Publisher;
      try {
        pub = publisher(call, call.metadata, 'grpc:PublishStream');
      } catch (err) {
        return callback(asServiceError(refusalOf(err, log)));
      }
      let received = 0;
      let refused = false;
      call.on('data', (e: EnvelopeMsg) => {
        if (refused) return;
        if (++received > MAX_STREAM_EVENTS) {
          refused = true;
          const message = `a PublishStream call carries at most ${MAX_STREAM_EVENTS} events: send them in shorter calls (a repeat is answered as a duplicate)`;
          return callback(asServiceError(new Refusal(status.RESOURCE_EXHAUSTED, 'stream_too_long', message)));
        }
        pub.add(e, (ack) => acks.push(ack));
      });
      call.on('end', () => void pub.drained().then(() => !refused && callback(null, { acks })));
    },

    subscribe: (call: ServerWritableStream<atlas.bus.SubscribeRequest, atlas.bus.Delivery.$Properties>) => {
      const deliver = (d: Delivery) => write(call, deliveryOf(d));
      open(call.metadata, call.request, deliver)
        .then((sub) => {
          call.on('cancelled', () => void sub.stop());
          call.on('close', () => void sub.stop());
          return sub.ended;
        })
        .then(
          () => call.end(),
          (err: unknown) => call.emit('error', asServiceError(refusalOf(err, log))),
        );
    },

    ack: (
      call: ServerUnaryCall<atlas.bus.AckRequest, atlas.bus.AckReply.$Properties>,
      callback: sendUnaryData<atlas.bus.AckReply.$Properties>,
    ) => {
      (async () => {
        admit(call.metadata, false);
        return { acknowledged: await subscriptions.ack(call.request.group, call.request.ids) };
      })().then(
        (reply) => callback(null, reply),
        (err: unknown) => callback(asServiceError(refusalOf(err, log))),
      );
    },

    streamEvents: (
      call: ServerDuplexStream<atlas.bus.ClientMessage, atlas.bus.ServerMessage.$Properties>,
    ) => {
      let sub: Subscription | undefined;
      const writer = serialWriter(call);
      const send = writer.send;
      const fail = (err: unknown) => {
        void sub?.stop();
        call.emit('error', asServiceError(refusalOf(err, log)));
      };
      let pub: Publisher;
      try {
        admit(call.metadata, false);
        pub = new Publisher({
          stream: call,
          door,
          admit: () => admit(call.metadata, true),
          checked,
          call: () => callOf(call.metadata, 'grpc:StreamEvents'),
          maxBatch: config.ATLAS_MAX_BATCH_EVENTS,
          log,
        });
      } catch (err) {
        return fail(err);
      }
      call.on('data', (m: atlas.bus.ClientMessage) => {
        if (m.publish) pub.add(m.publish as EnvelopeMsg, (ack) => void send({ published: ack }));
        else if (m.subscribe) {
          if (sub)
            return fail(
              new Refusal(status.FAILED_PRECONDITION, 'already_subscribed', 'this stream already subscribes'),
            );
          open(call.metadata, m.subscribe, (d) => send({ delivery: deliveryOf(d) })).then((s) => {
            sub = s;
            s.ended.catch(fail);
          }, fail);
        } else if (m.ack) {
          const { group, ids } = m.ack;
          subscriptions
            .ack(group ?? '', ids ?? [])
            .then((acknowledged) => send({ acked: { acknowledged } }), fail);
        }
      });
      const finish = () => {
        void sub?.stop();
        void pub.drained().then(() => writer.end());
      };
      call.on('end', finish);
      call.on('cancelled', () => void sub?.stop());
    },
  };

  async function open(
    md: Metadata,
    r: atlas.bus.SubscribeRequest.$Properties,
    deliver: (d: Delivery) => Promise<void>,
  ) {
    admit(md, false);
    return subscriptions.open(
      { group: r.group ?? '', consumer: r.consumer ?? '', types: r.types ?? [], topic: r.topic ?? '' },
      deliver,
    );
  }
}

/** Writes with the stream's flow control: a slow reader slows its own subscription. */
async function write<T>(call: { write(m: T): boolean; once(e: string, f: () => void): unknown }, message: T) {
  if (!call.write(message)) await once(call as unknown as NodeJS.EventEmitter, 'drain');
}

/**
 * Writes of several sources on one stream (acks, deliveries), one after the other: a single
 * wait for 'drain' at a time, and deliveries are slowed by a reader that is behind.
 */
function serialWriter<T>(call: {
  write(m: T): boolean;
  end(): void;
  once(e: string, f: () => void): unknown;
}) {
  let chain: Promise<void> = Promise.resolve();
  const queue = (step: () => unknown): Promise<void> => {
    chain = chain.then(step).then(
      () => {},
      () => {},
    );
    return chain;
  };
  return {
    send: (message: T): Promise<void> => queue(() => write(call, message)),
    /** Ends the stream after every message queued so far. */
    end: (): Promise<void> => queue(() => call.end()),
  };
}

function ackOf(a: Accepted): PublishAck {
  return { eventId: a.event_id, seq: a.seq, id: a.id, duplicate: a.duplicate };
}

function deliveryOf(d: Delivery): atlas.bus.Delivery.$Properties {
  const e = d.envelope;
  return {
    id: d.id,
    seq: d.seq,
    topic: d.topic,
    redelivered: d.redelivered,
    envelope: {
      eventId: e.event_id,
      eventType: e.event_type,
      source: e.source,
      timestamp: e.timestamp,
      version: e.version,
      payloadJson: e.payload,
    },
  };
}

/** Events of one stream received and not yet acknowledged, at most (then reading pauses). */
const MAX_WAITING = 2000;
/** PublishStream keeps every acknowledgement until the stream ends: this many events at most. */
const MAX_STREAM_EVENTS = 100_000;

interface PublisherParts {
  /** The call the events come from: paused while too many wait here. */
  stream: { pause(): void; resume(): void };
  door: Door;
  /** Throws the refusal of the next batch (rate, Redis memory), if any. */
  admit: () => void;
  checked: (e: EnvelopeMsg) => Envelope;
  call: () => Call;
  maxBatch: number;
  log: Logger;
}

/**
 * Events of one stream, accepted in the order they came, each with its own acknowledgement —
 * an error one when it was refused.
 */
class Publisher {
  /** In arrival order: an envelope to append, or a refusal already made (its ack keeps its place). */
  private queue: Array<{ envelope?: Envelope; refused?: PublishAck; reply: (ack: PublishAck) => void }> = [];
  private sending = false;
  private idle: Array<() => void> = [];
  private waiting = 0;
  private paused = false;
  private readonly parts: PublisherParts;

  constructor(parts: PublisherParts) {
    this.parts = parts;
  }

  add(e: EnvelopeMsg, onAck: (ack: PublishAck) => void): void {
    this.waiting++;
    // A client faster than Redis is not read from until its backlog here halves.
    if (this.waiting >= MAX_WAITING && !this.paused) {
      this.paused = true;
      this.parts.stream.pause();
    }
    const reply = (ack: PublishAck) => {
      this.waiting--;
      if (this.paused && this.waiting <= MAX_WAITING / 2) {
        this.paused = false;
        this.parts.stream.resume();
      }
      onAck(ack);
    };
    try {
      this.queue.push({ envelope: this.parts.checked(e), reply });
    } catch (err) {
      const refusal = refusalOf(err, this.parts.log);
      ingestMetrics.rejected.inc({ reason: refusal.wire });
      this.queue.push({ refused: errorAck(e.eventId, refusal), reply });
    }
    void this.pump();
  }

  /** Settles once every event added so far has its acknowledgement. */
  drained(): Promise<void> {
    if (!this.sending && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /**
   * One append at a time, in order: what arrives while one is in flight goes into the next
   * (at most ATLAS_MAX_BATCH_EVENTS), so batches grow with the load and add no delay.
   */
  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.refused) {
        this.queue.shift();
        head.reply(head.refused);
        continue;
      }
      let n = 0;
      while (n < this.queue.length && n < this.parts.maxBatch && this.queue[n]!.envelope) n++;
      await this.send(this.queue.splice(0, n));
    }
    this.sending = false;
    for (const resolve of this.idle.splice(0)) resolve();
  }

  private async send(part: Publisher['queue']): Promise<void> {
    try {
      this.parts.admit();
      const accepted = await this.parts.door.accept(
        this.parts.call(),
        part.map((p) => p.envelope as Envelope),
      );
      for (const [i, p] of part.entries()) p.reply(ackOf(accepted[i]!));
    } catch (err) {
      const refusal = refusalOf(err, this.parts.log);
      ingestMetrics.rejected.inc({ reason: refusal.wire });
      for (const p of part) p.reply(errorAck(p.envelope?.event_id, refusal));
    }
  }
}

function errorAck(eventId: string | null | undefined, refusal: Refusal): PublishAck {
  return { eventId: eventId ?? '', error: { code: refusal.wire, message: refusal.message } };
}
