/**
 * Protobuf beside JSON at the door (`application/x-protobuf`), against the real Redis: an
 * atlas.bus.Envelope lands in the ingest stream exactly as its JSON twin would, upstream Hermes
 * messages become topology events, dedup is shared across encodings, and broken protobuf is a
 * 400 naming the fault with nothing accepted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { atlas } from '../../proto/gen/bus.js';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { spaceCreated, spaceId, topicId } from '../support/events.ts';
import { protobufEnvelope, toProto } from '../support/grpc.ts';
import { type Door, postJson, request, startDoor } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('pb-ingest');
const ingest = fx.keys.stream(streams.ingest);
let door: Door;

beforeAll(async () => {
  door = await startDoor(testConfig(fx.prefix, { ATLAS_MAX_JSON_DEPTH: 8 }));
});
afterAll(() => door.close());

const postProtobuf = (path: string, body: Uint8Array) =>
  request(`${door.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf' },
    body,
  });

/** The ingest entry of a stream id, as a field → text map. */
async function entryOf(id: string): Promise<Record<string, string>> {
  const all = await readAll(fx.redis, ingest);
  const found = all.find((e) => e.id === id);
  if (!found) throw new Error(`no entry ${id}`);
  return found.toJSON();
}

const evm = (n: number) => Buffer.alloc(20, n);
const hermesMeta = {
  createdAt: 1_700_000_123,
  createdBy: evm(9),
  blockNumber: 77,
  cursor: 'c-77',
  sequence: 3,
};

describe('protobuf ingest', () => {
  it('accepts an Envelope with a JSON payload like its JSON twin', async () => {
    const event = spaceCreated(1);
    const a = await postProtobuf('/events', protobufEnvelope(toProto(event)));
    expect(a.status).toBe(202);
    expect(a.body).toMatchObject({ event_id: event.event_id, duplicate: false });
    const fields = await entryOf(a.body.id);
    expect(fields).toMatchObject({
      event_id: event.event_id,
      event_type: 'space.created',
      source: 'test',
      timestamp: String(event.timestamp),
      version: '1',
    });
    expect(JSON.parse(fields.payload!)).toEqual(event.payload);
  });

  it('shares dedup with JSON: the same event_id in protobuf is a duplicate', async () => {
    const event = spaceCreated(2);
    const first = await postJson(`${door.url}/events`, event);
    expect(first.status).toBe(202);
    const again = await postProtobuf('/events', protobufEnvelope(toProto(event)));
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ duplicate: true, seq: first.body.seq, id: first.body.id });
  });

  it('maps HermesCreateSpace and HermesSpaceTrustExtension to the topology events', async () => {
    const create = protobufEnvelope({
      eventId: 'hermes-create-1',
      source: 'hermes',
      timestamp: 1_700_000_123_000,
      hermes: {
        createSpace: {
          spaceId: Buffer.from(spaceId(10), 'hex'),
          eoaSpace: { owner: evm(1) },
          meta: hermesMeta,
        },
        topicId: Buffer.from(topicId(10), 'hex'),
        txHash: '0xabc',
      },
    });
    const a = await postProtobuf('/events', create);
    expect(a.status).toBe(202);
    const created = await entryOf(a.body.id);
    expect(created.event_type).toBe('space.created');
    expect(JSON.parse(created.payload!)).toEqual({
      space_id: spaceId(10),
      topic_id: topicId(10),
      space_type: { kind: 'personal', owner: `${'0'.repeat(24)}${'01'.repeat(20)}` },
      meta: {
        block_number: '77',
        block_timestamp: '1700000123',
        tx_hash: '0xabc',
        cursor: 'c-77',
        created_by: `${'0'.repeat(24)}${'09'.repeat(20)}`,
      },
    });

    const batch = atlas.bus.EnvelopeBatch.encode({
      envelopes: [
        {
          eventId: 'hermes-trust-1',
          source: 'hermes',
          timestamp: 1,
          hermes: {
            trustExtension: {
              sourceSpaceId: Buffer.from(spaceId(10), 'hex'),
              subtopic: { targetTopicId: Buffer.from(topicId(11), 'hex') },
              meta: hermesMeta,
            },
            txHash: '0xdef',
          },
        },
        {
          eventId: 'hermes-revoke-1',
          source: 'hermes',
          timestamp: 2,
          hermes: {
            trustExtension: {
              sourceSpaceId: Buffer.from(spaceId(10), 'hex'),
              related: { targetSpaceId: Buffer.from(spaceId(12), 'hex') },
              meta: hermesMeta,
            },
            txHash: '0xdef',
            revoke: true,
          },
        },
      ],
    }).finish();
    const b = await postProtobuf('/events/batch', batch);
    expect(b.status).toBe(202);
    const [trust, revoke] = await Promise.all(b.body.results.map((r: { id: string }) => entryOf(r.id)));
    expect(trust!.event_type).toBe('space.trust_extended');
    expect(JSON.parse(trust!.payload!)).toMatchObject({
      source_space_id: spaceId(10),
      extension: { kind: 'subtopic', target_topic_id: topicId(11) },
    });
    expect(revoke!.event_type).toBe('space.trust_revoked');
    expect(JSON.parse(revoke!.payload!).extension).toEqual({ kind: 'related', target_space_id: spaceId(12) });
  });

  it('refuses broken protobuf with a 400 that names the fault, and accepts nothing', async () => {
    const before = await fx.redis.xlen(ingest);
    const cases: Array<[Uint8Array, RegExp]> = [
      [Buffer.from([0x0a, 0xff, 0xff, 0xff]), /invalid_protobuf|not a valid/],
      [protobufEnvelope({ eventId: 'x', eventType: 't', source: 's', timestamp: 1 }), /no payload/],
      [protobufEnvelope({ ...toProto(spaceCreated(3)), payloadJson: '{"a":' }), /payload_json is not JSON/],
      [
        protobufEnvelope({
          eventId: 'mismatch',
          eventType: 'space.trust_revoked',
          source: 's',
          timestamp: 1,
          hermes: {
            createSpace: { spaceId: Buffer.alloc(16), eoaSpace: { owner: evm(1) }, meta: hermesMeta },
          },
        }),
        /does not match the Hermes message/,
      ],
      [
        protobufEnvelope({ eventId: 'h', source: 's', timestamp: 1, hermes: { txHash: '0x1' } }),
        /neither create_space nor trust_extension/,
      ],
    ];
    for (const [body, message] of cases) {
      const a = await postProtobuf('/events', body);
      expect(a.status, a.text).toBe(400);
      expect(a.body.error).toBe('invalid_protobuf');
      expect(a.body.message).toMatch(message);
      expect(a.body.errors).toEqual([{ field: '(body)', message: a.body.message }]);
    }
    // Decoded but not an envelope (no event_id): the envelope checks answer, field by field.
    const empty = await postProtobuf('/events', protobufEnvelope({ payloadJson: '{}', timestamp: 1 }));
    expect(empty.status).toBe(400);
    expect(empty.body.error).toBe('invalid_envelope');
    expect(empty.body.errors.map((e: { field: string }) => e.field)).toEqual(
      expect.arrayContaining(['event_id', 'event_type', 'source']),
    );
    // The JSON depth limit holds for a payload inside protobuf too.
    const deep = await postProtobuf(
      '/events',
      protobufEnvelope({
        ...toProto(spaceCreated(4)),
        payloadJson: `${'{"a":'.repeat(20)}1${'}'.repeat(20)}`,
      }),
    );
    expect(deep.status).toBe(400);
    expect(deep.body.error).toBe('too_deep');
    expect(await fx.redis.xlen(ingest)).toBe(before);
  });
});
