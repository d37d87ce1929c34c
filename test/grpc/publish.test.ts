/**
 * gRPC publish (unary, client streaming, bidirectional) against the real Redis: every publish
 * goes through the door's accept path — the same envelope checks, dedup, dense seq, tokens and
 * rates as HTTP — and each event gets its own acknowledgement.
 */
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newToken } from '../../pipeline/auth.ts';
import type { atlas } from '../../proto/gen/bus.js';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { spaceCreated } from '../support/events.ts';
import {
  type Bus,
  type GrpcBus,
  metadata,
  type PublishAck,
  publish,
  publishStream,
  startBus,
  toProto,
} from '../support/grpc.ts';
import { postJson } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('grpc-pub');
const ingest = fx.keys.stream(streams.ingest);

describe('gRPC publish without tokens', () => {
  let bus: GrpcBus;
  let client: Bus;
  beforeAll(async () => {
    bus = await startBus(testConfig(fx.prefix, { ATLAS_MAX_BATCH_EVENTS: 7 }));
    client = bus.client();
  });
  afterAll(() => bus.close());

  it('Publish: accepted into the ingest stream with the next seq; again = duplicate', async () => {
    const event = spaceCreated(1);
    const ack = await publish(client, toProto(event));
    expect(ack).toMatchObject({ eventId: event.event_id, duplicate: false });
    const entries = await readAll(fx.redis, ingest);
    const entry = entries.find((e) => e.id === ack.id)!;
    expect(entry.text('seq')).toBe(String(ack.seq));
    expect(JSON.parse(entry.text('payload'))).toEqual(event.payload);
    const again = await publish(client, toProto(event));
    expect(again).toMatchObject({ duplicate: true, id: ack.id, seq: ack.seq });
    // and the HTTP door sees the same dedup
    const http = await postJson(`${bus.door.url}/events`, event);
    expect(http.body).toMatchObject({ duplicate: true, id: ack.id });
  });

  it('Publish: an invalid envelope is INVALID_ARGUMENT naming the fields', async () => {
    const bad = { ...toProto(spaceCreated(2)), eventId: '', source: '' };
    const err = await publish(client, bad).then(
      () => null,
      (e: { code: number; details: string; metadata: { get(k: string): unknown[] } }) => e,
    );
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/event_id/);
    expect(err?.details).toMatch(/source/);
    expect(err?.metadata.get('atlas-error')).toEqual(['invalid_envelope']);
  });

  it('PublishStream: one acknowledgement per event in order, a bad one refused alone', async () => {
    const events = Array.from({ length: 25 }, (_, i) => toProto(spaceCreated(100 + i)));
    events[10] = { ...events[10]!, payloadJson: 'not json' };
    const acks = await publishStream(client, events);
    expect(acks.map((a) => a.eventId)).toEqual(events.map((e) => e.eventId));
    expect(acks[10]!.error).toMatchObject({ code: 'invalid_protobuf' });
    const good = acks.filter((a) => !a.error);
    expect(good).toHaveLength(24);
    // Batches of at most ATLAS_MAX_BATCH_EVENTS, but seq stays dense and in stream order.
    const seqs = good.map((a) => Number(a.seq));
    expect(seqs).toEqual(Array.from({ length: 24 }, (_, i) => seqs[0]! + i));
    const byId = new Map((await readAll(fx.redis, ingest)).map((e) => [e.id, e]));
    for (const a of good) expect(byId.get(a.id)?.text('event_id')).toBe(a.eventId);
  });

  it('PublishStream: more events than may wait at once (reading pauses and resumes) all acknowledged in order', async () => {
    const events = Array.from({ length: 3000 }, (_, i) => toProto(spaceCreated(10_000 + i)));
    const acks = await publishStream(client, events);
    expect(acks.map((a) => a.eventId)).toEqual(events.map((e) => e.eventId));
    expect(acks.filter((a) => a.error)).toEqual([]);
    const seqs = acks.map((a) => Number(a.seq));
    expect(seqs).toEqual(Array.from({ length: 3000 }, (_, i) => seqs[0]! + i));
  }, 120_000);

  it('StreamEvents: publishes on a bidirectional stream, acknowledged one by one', async () => {
    const call = client.streamEvents(metadata());
    const published: PublishAck[] = [];
    call.on('data', (m: atlas.bus.ServerMessage) => {
      if (m.published) published.push(m.published as PublishAck);
    });
    const ended = new Promise((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    const events = Array.from({ length: 5 }, (_, i) => toProto(spaceCreated(200 + i)));
    for (const e of events) call.write({ publish: e });
    call.end();
    await ended;
    expect(published.map((a) => a.eventId)).toEqual(events.map((e) => e.eventId));
    expect(published.every((a) => !a.error && !a.duplicate)).toBe(true);
  });
});

describe('gRPC publish with tokens', () => {
  let bus: GrpcBus;
  let client: Bus;
  const writer = newToken('writer', 2);
  beforeAll(async () => {
    bus = await startBus(testConfig(fx.freshPrefix('grpc-auth').prefix, { ATLAS_AUTH_TOKENS: writer.entry }));
    client = bus.client();
  });
  afterAll(() => bus.close());

  it('refuses a missing or wrong token (UNAUTHENTICATED) and a token over its rate (RESOURCE_EXHAUSTED)', async () => {
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => status.OK,
        (e: { code: number }) => e.code,
      );
    expect(await codeOf(publish(client, toProto(spaceCreated(1))))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(publish(client, toProto(spaceCreated(1)), metadata('wrong')))).toBe(
      status.UNAUTHENTICATED,
    );
    expect(await codeOf(publishStream(client, [toProto(spaceCreated(1))], metadata('wrong')))).toBe(
      status.UNAUTHENTICATED,
    );
    const codes: number[] = [];
    for (let i = 0; i < 4; i++)
      codes.push(await codeOf(publish(client, toProto(spaceCreated(10 + i)), metadata(writer.token))));
    expect(codes[0]).toBe(status.OK);
    expect(codes).toContain(status.RESOURCE_EXHAUSTED);
  });
});
