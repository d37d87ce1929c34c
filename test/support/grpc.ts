/**
 * The door with its gRPC service in-process (like ingestComponent with ATLAS_GRPC_PORT), a
 * client of the service, and small promise helpers for its calls.
 */
import { type Client, credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import type { Config } from '../../pipeline/config.ts';
import { atlas } from '../../proto/gen/bus.js';
import { type GrpcDoor, startGrpc } from '../../stages/grpc/server.ts';
import { BusClient } from '../../stages/grpc/service.ts';
import { testLog } from './config.ts';
import { type Door, startDoor } from './http.ts';

export type Envelope = atlas.bus.Envelope.$Properties;
export type PublishAck = atlas.bus.PublishAck;
export type Delivery = atlas.bus.Delivery;

// biome-ignore lint/suspicious/noExplicitAny: the generic client's methods are untyped; each helper below types its call
export type Bus = Client & Record<string, any>;

export interface GrpcBus {
  door: Door;
  grpc: GrpcDoor;
  address: string;
  client(): Bus;
  close(): Promise<void>;
}

export async function startBus(config: Config): Promise<GrpcBus> {
  const door = await startDoor(config);
  const grpc = await startGrpc(
    { config, door: door.app.door, subscriptions: door.app.subscriptions, log: testLog },
    0,
    '127.0.0.1',
  );
  const address = `127.0.0.1:${grpc.port}`;
  const clients: Bus[] = [];
  return {
    door,
    grpc,
    address,
    client: () => {
      const c = new BusClient(address, credentials.createInsecure()) as unknown as Bus;
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients) c.close();
      await grpc.stop();
      await door.close();
    },
  };
}

export function metadata(token?: string): Metadata {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** A JSON envelope of the tests as the protobuf one (payload as JSON text). */
export function toProto(e: {
  event_id: string;
  event_type: string;
  source: string;
  timestamp: number;
  version: number;
  payload: unknown;
}): Envelope {
  return {
    eventId: e.event_id,
    eventType: e.event_type,
    source: e.source,
    timestamp: e.timestamp,
    version: e.version,
    payloadJson: JSON.stringify(e.payload),
  };
}

export function publish(client: Bus, e: Envelope, md = metadata()): Promise<PublishAck> {
  return new Promise((resolve, reject) =>
    client.publish(e, md, (err: ServiceError | null, ack: PublishAck) => (err ? reject(err) : resolve(ack))),
  );
}

export function publishStream(client: Bus, events: Envelope[], md = metadata()): Promise<PublishAck[]> {
  return new Promise((resolve, reject) => {
    const call = client.publishStream(md, (err: ServiceError | null, acks: atlas.bus.PublishAcks) =>
      err ? reject(err) : resolve(acks.acks as PublishAck[]),
    );
    for (const e of events) call.write(e);
    call.end();
  });
}

export function ack(client: Bus, group: string, ids: string[], md = metadata()): Promise<number> {
  return new Promise((resolve, reject) =>
    client.ack({ group, ids }, md, (err: ServiceError | null, r: atlas.bus.AckReply) =>
      err ? reject(err) : resolve(r.acknowledged),
    ),
  );
}

export interface Subscriber {
  received: Delivery[];
  /** Rejected with the call's error, resolved when the server ends it. */
  done: Promise<void>;
  cancel(): void;
}

export function subscribe(
  client: Bus,
  request: atlas.bus.SubscribeRequest.$Properties,
  md = metadata(),
): Subscriber {
  const call = client.subscribe(request, md);
  const received: Delivery[] = [];
  call.on('data', (d: Delivery) => received.push(d));
  const done = new Promise<void>((resolve, reject) => {
    call.on('end', resolve);
    call.on('error', (err: ServiceError) => (err.code === 1 ? resolve() : reject(err))); // 1 = CANCELLED
  });
  return { received, done, cancel: () => call.cancel() };
}

/** The decoded payload of a delivery. */
export const payloadOf = (d: Delivery): unknown => JSON.parse(d.envelope?.payloadJson ?? 'null');
export const protobufEnvelope = (e: Envelope): Buffer => Buffer.from(atlas.bus.Envelope.encode(e).finish());
