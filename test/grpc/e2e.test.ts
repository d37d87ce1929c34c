/**
 * Hermes protobuf in, topology graph out: `atlas up` with the gRPC door on, against the real
 * Redis and Kafka. Upstream Hermes messages arrive over every interface — HTTP
 * `application/x-protobuf`, gRPC Publish, PublishStream and StreamEvents — and the canonical
 * graph they make is read back from the Kafka topic and decoded.
 */
import { credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { atlas } from '../../proto/gen/bus.js';
import { BusClient } from '../../stages/grpc/service.ts';
import {
  decodeTopic,
  deleteTopics,
  kafkaInit,
  readTopic,
  uniqueTopic,
  waitForCount,
} from '../support/e2e-kafka.ts';
import { type HeldLock, lockBroker } from '../support/e2e-lock.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { spaceId, topicId } from '../support/events.ts';
import { type Bus, metadata, protobufEnvelope, publish, publishStream } from '../support/grpc.ts';
import { request } from '../support/http.ts';
import { killChildren } from '../support/processes.ts';
import { freePort, useRedis } from '../support/redis.ts';

const fx = useRedis('grpc-e2e');
const topics: string[] = [];
let lock: HeldLock | undefined;

beforeAll(async () => {
  lock = await lockBroker('shared');
}, 620_000);

afterAll(async () => {
  await killChildren();
  await deleteTopics(topics).catch(() => undefined);
  await lock?.release();
}, 60_000);

const id = (hex: string) => Buffer.from(hex, 'hex');
const meta = (block: number) => ({
  createdAt: 1_700_000_000 + block,
  createdBy: Buffer.alloc(20, block),
  blockNumber: block,
  cursor: `cursor-${block}`,
});

function hermesCreate(n: number, block: number): atlas.bus.Envelope.$Properties {
  return {
    eventId: `hermes-create-${n}`,
    source: 'hermes',
    timestamp: Date.now(),
    hermes: {
      createSpace: {
        spaceId: id(spaceId(n)),
        ...(n % 2
          ? { eoaSpace: { owner: Buffer.alloc(20, n) } }
          : { defaultDaoSpace: { address: Buffer.alloc(20, n) } }),
        meta: meta(block),
      },
      topicId: id(topicId(n)),
      txHash: `0x${block.toString(16).padStart(64, '0')}`,
    },
  };
}

function hermesTrust(
  from: number,
  extension: atlas.bus.HermesTopology.$Properties['trustExtension'],
  block: number,
): atlas.bus.Envelope.$Properties {
  return {
    eventId: `hermes-trust-${from}-${block}`,
    source: 'hermes',
    timestamp: Date.now(),
    hermes: {
      trustExtension: { sourceSpaceId: id(spaceId(from)), ...extension, meta: meta(block) },
      txHash: `0x${block.toString(16).padStart(64, '0')}`,
    },
  };
}

it('Hermes messages over HTTP protobuf and all three gRPC publishes make the expected canonical graph in Kafka', async () => {
  const root = spaceId(1);
  const topic = uniqueTopic('grpc-e2e');
  topics.push(topic);
  const grpcPort = await freePort();
  const p = new E2EPipeline(fx.redis, {
    prefix: fx.freshPrefix('grpc-e2e').prefix,
    topic,
    roots: [root],
    env: { ATLAS_GRPC_PORT: String(grpcPort) },
  });
  await kafkaInit(topic);
  await p.up();
  const client = new BusClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure()) as unknown as Bus;
  try {
    // 1. HTTP, application/x-protobuf: the root space.
    const http = await request(`${p.doorUrl()}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' },
      body: protobufEnvelope(hermesCreate(1, 1)),
    });
    expect(http.status).toBe(202);
    // 2. gRPC Publish: a DAO space.
    expect((await publish(client, hermesCreate(2, 2))).error).toBeFalsy();
    // 3. gRPC PublishStream: trust from the root to 2 (verified) and 3 (related).
    const acks = await publishStream(client, [
      hermesTrust(1, { verified: { targetSpaceId: id(spaceId(2)) } }, 3),
      hermesTrust(1, { related: { targetSpaceId: id(spaceId(3)) } }, 4),
    ]);
    expect(acks.map((a) => a.error ?? null)).toEqual([null, null]);
    // 4. gRPC StreamEvents: space 2 trusts topic 4, whose only member (space 4) is outside the
    //    canonical set: no change to the graph, so no message.
    const call = client.streamEvents(metadata());
    const published: atlas.bus.PublishAck[] = [];
    const ended = new Promise((resolve, reject) => {
      call.on(
        'data',
        (m: atlas.bus.ServerMessage) => m.published && published.push(m.published as atlas.bus.PublishAck),
      );
      call.on('end', resolve);
      call.on('error', reject);
    });
    call.write({ publish: hermesTrust(2, { subtopic: { targetTopicId: id(topicId(4)) } }, 5) });
    call.write({ publish: hermesCreate(4, 6) });
    call.end();
    await ended;
    expect(published.map((a) => a.error ?? null)).toEqual([null, null]);

    // Emissions: the first graph of the root, then each of the two trust edges.
    await waitForCount(topic, 3, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${p.output()}`);
    });
    const updates = (await decodeTopic(await readTopic(topic))).get(root)!.updates;
    expect(updates.map((u) => u.sequence_number)).toEqual(['1', '2', '3']);
    const last = updates.at(-1)!;
    expect(last.tree).toEqual({
      space_id: root,
      edge: 'root',
      topic_id: null,
      children: [
        { space_id: spaceId(2), edge: 'verified', topic_id: null, children: [] },
        { space_id: spaceId(3), edge: 'related', topic_id: null, children: [] },
      ],
    });
    expect(last.canonical_space_ids).toEqual([spaceId(1), spaceId(2), spaceId(3)]);
    expect(last.meta).toMatchObject({ block_number: '4', cursor: 'cursor-4', created_at: '1700000004' });
    expect(p.crashes()).toEqual([]);
  } finally {
    client.close();
    await p.stop();
  }
}, 180_000);
