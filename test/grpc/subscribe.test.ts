/**
 * Subscribing over gRPC and SSE against the real Redis: filters by type and topic pattern, a
 * consumer group of two sharing the events, at-least-once with acknowledgements (an event left
 * unacknowledged by a member that disconnects is delivered again, to another member or to the
 * same member name when it comes back), SSE acks by POST and by Last-Event-ID, a subscriber
 * group that does not hold back publishers, and an abandoned group expiring.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupsOf } from '../../pipeline/backlog.ts';
import { registry } from '../../pipeline/metrics.ts';
import type { atlas } from '../../proto/gen/bus.js';
import { streams } from '../../stages/streams.ts';
import { testConfig } from '../support/config.ts';
import { type Envelope, spaceCreated, trustExtended } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { ack, type Bus, type GrpcBus, metadata, startBus, subscribe } from '../support/grpc.ts';
import { postJson, request } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('grpc-sub');
const ingest = fx.keys.stream(streams.ingest);
let bus: GrpcBus;
let client: Bus;

beforeAll(async () => {
  bus = await startBus(
    testConfig(fx.prefix, {
      ATLAS_SUBSCRIBE_REDELIVER_MS: 300,
      ATLAS_SUBSCRIBE_IN_FLIGHT: 50,
      ATLAS_HTTP_CONNECTION_TIMEOUT_MS: 2000,
    }),
  );
  client = bus.client();
});
afterAll(() => bus.close());

async function post(events: Envelope[]): Promise<string[]> {
  const ids: string[] = [];
  for (const e of events) {
    const a = await postJson(`${bus.door.url}/events`, e);
    expect(a.status).toBe(202);
    ids.push(a.body.id);
  }
  return ids;
}

/** A subscription reads from the moment its group exists: wait for that before publishing. */
async function groupExists(group: string): Promise<void> {
  await eventually(async () =>
    (await groupsOf(fx.redis, ingest)).some((g) => g.name === `subscriber:${group}`),
  );
}

async function pendingOf(group: string): Promise<number> {
  return (await groupsOf(fx.redis, ingest)).find((g) => g.name === `subscriber:${group}`)?.pending ?? -1;
}

describe('gRPC Subscribe', () => {
  it('delivers only the types and topics asked for; filtered-out events hold nothing', async () => {
    const byType = subscribe(client, { group: 'types', types: ['space.trust_extended'] });
    const byTopic = subscribe(client, { group: 'topics', topic: 'space.*' });
    const none = subscribe(client, { group: 'nothing', topic: 'kasmina.**' });
    await Promise.all(['types', 'topics', 'nothing'].map(groupExists));
    const ids = await post([spaceCreated(1), trustExtended(1, 2), spaceCreated(2), trustExtended(2, 1)]);
    await eventually(() => byType.received.length === 2 && byTopic.received.length === 4);
    expect(byType.received.map((d) => d.id)).toEqual([ids[1], ids[3]]);
    expect(byType.received.every((d) => d.envelope?.eventType === 'space.trust_extended')).toBe(true);
    expect(byTopic.received.map((d) => d.id)).toEqual(ids);
    expect(byTopic.received[0]).toMatchObject({ topic: 'space.created', redelivered: false });
    expect(JSON.parse(byTopic.received[0]!.envelope!.payloadJson!)).toEqual(spaceCreated(1).payload);
    await eventually(async () => (await pendingOf('nothing')) === 0);
    expect(none.received).toEqual([]);
    // Only what was delivered waits for an acknowledgement.
    expect(await pendingOf('types')).toBe(2);
    expect(
      await ack(
        client,
        'types',
        byType.received.map((d) => d.id),
      ),
    ).toBe(2);
    expect(
      await ack(
        client,
        'types',
        byType.received.map((d) => d.id),
      ),
    ).toBe(0);
    expect(await pendingOf('types')).toBe(0);
    for (const s of [byType, byTopic, none]) s.cancel();
    await Promise.all([byType.done, byTopic.done, none.done]);
  });

  it('a group of two shares the events: each event first delivered to exactly one member', async () => {
    const a = subscribe(client, { group: 'pair', consumer: 'a' });
    const b = subscribe(client, { group: 'pair', consumer: 'b' });
    await groupExists('pair');
    await eventually(async () => {
      const consumers = (await fx.redis.xinfo('CONSUMERS', ingest, 'subscriber:pair')) as unknown[];
      return consumers.length === 2;
    });
    const ids = await post(Array.from({ length: 40 }, (_, i) => spaceCreated(1000 + i)));
    // Unacknowledged past ATLAS_SUBSCRIBE_REDELIVER_MS an event may go to the other member too
    // (at least once, flagged redelivered): the first deliveries are what the members share.
    const first = (s: { received: atlas.bus.Delivery[] }) => s.received.filter((d) => !d.redelivered);
    await eventually(() => first(a).length + first(b).length >= 40);
    const got = [...first(a), ...first(b)].map((d) => d.id);
    expect(got.sort()).toEqual([...ids].sort());
    expect(first(a).length).toBeGreaterThan(0);
    expect(first(b).length).toBeGreaterThan(0);
    await ack(client, 'pair', got);
    expect(await pendingOf('pair')).toBe(0);
    a.cancel();
    b.cancel();
  });

  it('events a member left unacknowledged when it disconnected go to another member', async () => {
    const first = subscribe(client, { group: 'redeliver', consumer: 'first' });
    await groupExists('redeliver');
    const ids = await post(Array.from({ length: 5 }, (_, i) => spaceCreated(2000 + i)));
    await eventually(() => first.received.length === 5);
    await ack(client, 'redeliver', [ids[0]!]);
    first.cancel();
    await first.done;
    const second = subscribe(client, { group: 'redeliver', consumer: 'second' });
    await eventually(() => second.received.length === 4);
    expect(second.received.map((d) => d.id)).toEqual(ids.slice(1));
    expect(second.received.every((d) => d.redelivered)).toBe(true);
    await ack(
      client,
      'redeliver',
      second.received.map((d) => d.id),
    );
    expect(await pendingOf('redeliver')).toBe(0);
    second.cancel();
  });

  it('a member that comes back under its name gets its unacknowledged events first', async () => {
    const before = subscribe(client, { group: 'comeback', consumer: 'me' });
    await groupExists('comeback');
    const ids = await post(Array.from({ length: 3 }, (_, i) => spaceCreated(3000 + i)));
    await eventually(() => before.received.length === 3);
    before.cancel();
    await before.done;
    const after = subscribe(client, { group: 'comeback', consumer: 'me' });
    await eventually(() => after.received.length === 3);
    expect(after.received.map((d) => d.id)).toEqual(ids);
    expect(after.received.every((d) => d.redelivered)).toBe(true);
    after.cancel();
  });

  it('StreamEvents subscribes and acknowledges on the stream it publishes on', async () => {
    const call = client.streamEvents(metadata());
    const deliveries: atlas.bus.Delivery[] = [];
    const acked: number[] = [];
    call.on('data', (m: atlas.bus.ServerMessage) => {
      if (m.delivery) deliveries.push(m.delivery as atlas.bus.Delivery);
      if (m.acked) acked.push(m.acked.acknowledged ?? 0);
    });
    call.on('error', () => {});
    call.write({ subscribe: { group: 'bidi', types: ['space.created'] } });
    await groupExists('bidi');
    call.write({ publish: { ...toProtoOf(spaceCreated(4000)) } });
    call.write({ publish: { ...toProtoOf(trustExtended(4000, 1)) } });
    await eventually(() => deliveries.length === 1);
    expect(deliveries[0]!.envelope?.eventType).toBe('space.created');
    call.write({ ack: { group: 'bidi', ids: [deliveries[0]!.id] } });
    await eventually(() => acked.length === 1);
    expect(acked).toEqual([1]);
    call.end();
  });

  it('refuses a bad group name', async () => {
    const bad = subscribe(client, { group: 'no spaces allowed' });
    await expect(bad.done).rejects.toMatchObject({ code: 3 }); // INVALID_ARGUMENT
  });
});

function toProtoOf(e: Envelope): atlas.bus.Envelope.$Properties {
  return {
    eventId: e.event_id,
    eventType: e.event_type,
    source: e.source,
    timestamp: e.timestamp,
    version: e.version,
    payloadJson: JSON.stringify(e.payload),
  };
}

interface Frame {
  id?: string;
  event?: string;
  data?: string;
}

/** An SSE connection: frames as they arrive, and a way to hang up. */
function sse(path: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const frames: Frame[] = [];
  const status = fetch(`${bus.door.url}${path}`, { headers, signal: controller.signal }).then(async (res) => {
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    void (async () => {
      for (;;) {
        const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (done) return;
        buffered += decoder.decode(value, { stream: true });
        let end = buffered.indexOf('\n\n');
        while (end >= 0) {
          const frame: Frame = {};
          for (const line of buffered.slice(0, end).split('\n')) {
            const at = line.indexOf(': ');
            if (line.startsWith(':') || at < 0) continue;
            frame[line.slice(0, at) as keyof Frame] = line.slice(at + 2);
          }
          if (frame.event) frames.push(frame);
          buffered = buffered.slice(end + 2);
          end = buffered.indexOf('\n\n');
        }
      }
    })();
    return res;
  });
  return {
    frames,
    events: () => frames.filter((f) => f.event !== 'subscribed'),
    response: status,
    close: () => controller.abort(),
  };
}

describe('SSE subscribe', () => {
  it('streams the filtered events; POST /subscribe/ack acknowledges them', async () => {
    const s = sse('/subscribe?group=sse&consumer=one&type=space.trust_extended');
    const res = await s.response;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await groupExists('sse');
    const ids = await post([spaceCreated(5000), trustExtended(5000, 1), trustExtended(5000, 2)]);
    await eventually(() => s.events().length === 2);
    expect(s.frames[0]).toMatchObject({ event: 'subscribed' });
    expect(s.events().map((f) => f.id)).toEqual([ids[1], ids[2]]);
    const data = JSON.parse(s.events()[0]!.data!);
    expect(data).toMatchObject({ id: ids[1], topic: 'space.trust_extended', redelivered: false });
    expect(data.envelope.payload).toEqual(trustExtended(5000, 1).payload);
    const acked = await postJson(`${bus.door.url}/subscribe/ack`, { group: 'sse', ids: [ids[1], ids[2]] });
    expect(acked.status).toBe(200);
    expect(acked.body.acknowledged).toBe(2);
    expect(await pendingOf('sse')).toBe(0);
    s.close();
  });

  it('Last-Event-ID on a reconnect acknowledges up to it and redelivers the rest', async () => {
    const s = sse('/subscribe?group=sse-resume&consumer=two');
    await s.response;
    await groupExists('sse-resume');
    const ids = await post(Array.from({ length: 3 }, (_, i) => spaceCreated(6000 + i)));
    await eventually(() => s.events().length === 3);
    s.close();
    const again = sse('/subscribe?group=sse-resume&consumer=two', { 'last-event-id': ids[1]! });
    await again.response;
    await eventually(() => again.events().length === 1);
    expect(again.events()[0]!.id).toBe(ids[2]);
    expect(JSON.parse(again.events()[0]!.data!).redelivered).toBe(true);
    expect(await pendingOf('sse-resume')).toBe(1);
    again.close();
  });

  it('refuses a request without a group (400)', async () => {
    const a = await request(`${bus.door.url}/subscribe`);
    expect(a.status).toBe(400);
    expect(a.body.errors[0].message).toMatch(/group/);
  });
});

describe('subscriber groups and retention', () => {
  it('a lagging subscriber group does not put the door into backpressure', async () => {
    const { prefix, keys } = fx.freshPrefix('grpc-bp');
    const stream = keys.stream(streams.ingest);
    const small = await startBus(testConfig(prefix, { ATLAS_HIGH_WATER: 3 }));
    try {
      await fx.redis.xgroup('CREATE', stream, 'validate', '$', 'MKSTREAM');
      const lazy = subscribe(small.client(), { group: 'lazy' });
      await eventually(async () =>
        (await groupsOf(fx.redis, stream)).some((g) => g.name === 'subscriber:lazy'),
      );
      lazy.cancel();
      for (let i = 0; i < 6; i++)
        expect((await postJson(`${small.door.url}/events`, spaceCreated(7000 + i))).status).toBe(202);
      // The pipeline's own group catches up; the subscriber group stays 6 behind.
      await fx.redis.xreadgroup('GROUP', 'validate', 'v', 'STREAMS', stream, '>');
      const ids = (await fx.redis.xrange(stream, '-', '+')).map(([id]) => id);
      await fx.redis.xack(stream, 'validate', ...ids);
      await eventually(
        async () => (await postJson(`${small.door.url}/events`, spaceCreated(7100))).status === 202,
      );
      const lagging = (await groupsOf(fx.redis, stream)).find((g) => g.name === 'subscriber:lazy')!;
      expect(lagging.lag).toBeGreaterThanOrEqual(6);
    } finally {
      await small.close();
    }
  });

  it('a group nobody read from within its TTL is deleted, loudly', async () => {
    const s = subscribe(client, { group: 'abandoned' });
    await groupExists('abandoned');
    s.cancel();
    await s.done;
    const ttlMs = 86_400_000;
    const expired = await bus.door.app.subscriptions.expireGroups(Date.now() + ttlMs + 1000);
    expect(expired).toContain('subscriber:abandoned');
    expect((await groupsOf(fx.redis, ingest)).map((g) => g.name)).not.toContain('subscriber:abandoned');
    const metric = await registry.getSingleMetricAsString('atlas_subscriber_groups_expired_total');
    expect(metric).toMatch(/atlas_subscriber_groups_expired_total [1-9]/);
  });
});
