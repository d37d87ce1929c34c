/**
 * A Node client of the gRPC service `atlas.bus.Bus` (what the README's gRPC section shows):
 * subscribes as a member of group `demo` to space.* events, publishes a Hermes
 * HermesCreateSpace (unary) and two JSON-payload envelopes (one client stream), prints what
 * arrives and acknowledges it.
 *
 *   ATLAS_GRPC_PORT=9090 npx atlas run ingest &
 *   ATLAS_GRPC_ADDRESS=127.0.0.1:9090 node ops/demo/bus-client.ts
 *
 * With ATLAS_AUTH_TOKENS on the door, set ATLAS_TOKEN.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { atlas } from '../../proto/gen/bus.js';
import { BusClient } from '../../stages/grpc/service.ts';

const address = process.env.ATLAS_GRPC_ADDRESS ?? '127.0.0.1:9090';
// biome-ignore lint/suspicious/noExplicitAny: the generic client's methods are untyped
const bus = new BusClient(address, credentials.createInsecure()) as any;
const md = new Metadata();
if (process.env.ATLAS_TOKEN) md.set('authorization', `Bearer ${process.env.ATLAS_TOKEN}`);

/** uint64 fields decode as Long: shown as decimal strings. */
const plain = (a: atlas.bus.PublishAck) => ({ ...a, seq: String(a.seq) });
const hex = (h: string) => Buffer.from(h, 'hex');
const meta = { block_number: 1001, block_timestamp: 1732300001, tx_hash: '0x02', cursor: 'c1' };
const json = (n: number): atlas.bus.Envelope.$Properties => ({
  eventId: `demo-trust-${n}-${Date.now()}`,
  eventType: 'space.trust_extended',
  source: 'bus-client',
  timestamp: Date.now(),
  version: 1,
  payloadJson: JSON.stringify({
    source_space_id: '25000000000000000000000000000001',
    extension: { kind: 'verified', target_space_id: `2500000000000000000000000000000${n + 1}` },
    meta,
  }),
});

// 1. Subscribe: a member of group `demo`, space.* events only (at least once: ack what you handled).
const received: atlas.bus.Delivery[] = [];
const sub = bus.subscribe({ group: 'demo', consumer: 'demo-1', topic: 'space.*' }, md);
sub.on('data', (d: atlas.bus.Delivery) => {
  received.push(d);
  console.log('delivered', d.id, d.envelope?.eventType, d.envelope?.payloadJson);
});
sub.on('error', (err: ServiceError) => err.code !== 1 && console.error('subscribe:', err.details));
await new Promise((r) => setTimeout(r, 300)); // the group reads from the moment it exists

// 2. Publish (unary): an upstream Hermes message, mapped by the door to space.created.
const created = await new Promise((ok, fail) =>
  bus.publish(
    {
      eventId: `demo-create-${Date.now()}`,
      source: 'bus-client',
      timestamp: Date.now(),
      hermes: {
        createSpace: {
          spaceId: hex('25000000000000000000000000000001'),
          eoaSpace: { owner: hex('ab'.repeat(20)) },
          meta: { createdAt: 1732300000, blockNumber: 1000, cursor: 'c0' },
        },
        topicId: hex('4a000000000000000000000000000002'),
        txHash: '0x01',
      },
    },
    md,
    (err: ServiceError | null, ack: atlas.bus.PublishAck) => (err ? fail(err) : ok(ack)),
  ),
);
console.log('Publish ->', plain(created as atlas.bus.PublishAck));

// 3. PublishStream: one acknowledgement per event when the stream ends.
const acks = await new Promise((ok, fail) => {
  const call = bus.publishStream(md, (err: ServiceError | null, r: atlas.bus.PublishAcks) =>
    err ? fail(err) : ok(r.acks),
  );
  call.write(json(1));
  call.write(json(2));
  call.end();
});
console.log('PublishStream ->', (acks as atlas.bus.PublishAck[]).map(plain));

// 4. Acknowledge what arrived; unacknowledged events would be delivered again.
await new Promise((r) => setTimeout(r, 1000));
const acked = await new Promise((ok, fail) =>
  bus.ack(
    { group: 'demo', ids: received.map((d) => d.id) },
    md,
    (err: ServiceError | null, r: atlas.bus.AckReply) => (err ? fail(err) : ok(r.acknowledged)),
  ),
);
console.log('Ack ->', acked);
sub.cancel();
bus.close();
