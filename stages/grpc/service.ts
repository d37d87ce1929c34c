/**
 * The gRPC service `atlas.bus.Bus` (proto/bus.proto) over the statically generated messages:
 * no .proto is loaded at run time, so `tsc` fails when the contract and the code disagree.
 * Servers and clients (tests, load/, users' Node programs) share this definition.
 */
import { makeGenericClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { atlas } from '../../proto/gen/bus.js';

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

function method<Req, Res>(
  name: string,
  request: Codec<Req>,
  response: Codec<Res>,
  streams: { request: boolean; response: boolean },
) {
  return {
    path: `/atlas.bus.Bus/${name}`,
    requestStream: streams.request,
    responseStream: streams.response,
    requestSerialize: (m: Req) => Buffer.from(request.encode(m).finish()),
    requestDeserialize: (b: Buffer) => request.decode(b),
    responseSerialize: (m: Res) => Buffer.from(response.encode(m).finish()),
    responseDeserialize: (b: Buffer) => response.decode(b),
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}

const unary = { request: false, response: false };
const bus = atlas.bus;

export const busService = {
  publish: method('Publish', bus.Envelope, bus.PublishAck, unary),
  publishStream: method('PublishStream', bus.Envelope, bus.PublishAcks, { request: true, response: false }),
  subscribe: method('Subscribe', bus.SubscribeRequest, bus.Delivery, { request: false, response: true }),
  ack: method('Ack', bus.AckRequest, bus.AckReply, unary),
  streamEvents: method('StreamEvents', bus.ClientMessage, bus.ServerMessage, {
    request: true,
    response: true,
  }),
} satisfies ServiceDefinition;

/** A client class for the service: `new BusClient('host:port', credentials.createInsecure())`. */
export const BusClient = makeGenericClientConstructor(busService, 'atlas.bus.Bus');
