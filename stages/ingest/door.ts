/**
 * The door's accept path as other interfaces of the process (gRPC) use it: the same checks,
 * limits, tracing and script as POST /events. Built by buildServer, decorated on the app.
 */
import type { Subscriptions } from '../subscribe/subscriptions.ts';
import type { Accepted } from './accept.ts';
import type { Envelope } from './envelope.ts';
import type { Extras } from './errors.ts';

/** Who is publishing, for the trace span and the entries. */
export interface Call {
  requestId: string;
  /** The caller's W3C traceparent, when it sent one. */
  traceparent: string | undefined;
  method: string;
  route: string;
}

export interface Door {
  /** The refusal of a caller (no or a wrong token, over its rate, Redis full), if any. */
  admit(authorization: string | undefined, write: boolean): (Error & Extras) | undefined;
  /** Backpressure, the trace span, the atomic accept: what POST /events does after its checks. */
  accept(call: Call, envelopes: Envelope[]): Promise<Accepted[]>;
}

declare module 'fastify' {
  interface FastifyInstance {
    door: Door;
    /** The door's subscribers (SSE here, gRPC beside it). */
    subscriptions: Subscriptions;
  }
}
