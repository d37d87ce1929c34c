/**
 * The gRPC door when Redis goes away, against a throwaway redis-server: a publish is refused
 * with UNAVAILABLE (nothing accepted, retry with the same event_id), a subscriber keeps its
 * subscription and receives again once Redis is back — nothing it had not acknowledged is lost.
 */
import { status } from '@grpc/grpc-js';
import { expect, it } from 'vitest';
import { testConfig } from '../support/config.ts';
import { spaceCreated } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { ack, publish, startBus, subscribe, toProto } from '../support/grpc.ts';
import { startScratchRedis } from '../support/redis.ts';

it('publish is UNAVAILABLE while Redis is down; a subscriber resumes when it is back', async () => {
  const scratch = await startScratchRedis({ aof: true });
  const bus = await startBus(testConfig('grpc-down', { REDIS_URL: scratch.url }));
  try {
    const client = bus.client();
    const sub = subscribe(client, { group: 'survivor', consumer: 's' });
    await eventually(async () => (await publish(client, toProto(spaceCreated(1)))).seq !== undefined);
    await eventually(() => sub.received.length >= 1, 20_000);

    await scratch.restart({ keepData: true }).then(() => scratch.pause());
    const refused = await publish(client, toProto(spaceCreated(2))).then(
      () => null,
      (e: { code: number; metadata: { get(k: string): unknown[] } }) => e,
    );
    expect(refused?.code).toBe(status.UNAVAILABLE);
    expect(refused?.metadata.get('atlas-error')).toEqual(['unavailable']);
    scratch.resume();

    // The same event again once Redis answers: accepted, and delivered to the subscriber.
    const again = await eventually(
      () =>
        publish(client, toProto({ ...spaceCreated(2), event_id: 'after-outage' })).catch(
          () => false as const,
        ),
      20_000,
      200,
    );
    expect(again.duplicate).toBe(false);
    await eventually(() => sub.received.some((d) => d.id === again.id), 20_000);
    expect(
      await ack(
        client,
        'survivor',
        sub.received.map((d) => d.id),
      ),
    ).toBeGreaterThan(0);
    sub.cancel();
  } finally {
    await bus.close();
    await scratch.stop();
  }
}, 90_000);
