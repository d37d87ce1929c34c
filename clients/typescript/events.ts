/**
 * The events a producer sends, typed from the very zod schemas the pipeline validates them with
 * (z.input: what may be sent, before normalisation), so the client cannot drift from the door.
 * Type-only imports: the client carries none of the pipeline's code at run time.
 */
import type { z } from 'zod';
import type { Envelope } from '../../stages/ingest/envelope.ts';
import type { spaceCreatedV1, trustV1 } from '../../stages/validate/schemas.ts';

export type { Envelope };

/** The payload of each event type (version 1, the only one so far). */
export interface Payloads {
  'space.created': z.input<typeof spaceCreatedV1>;
  'space.trust_extended': z.input<typeof trustV1>;
  'space.trust_revoked': z.input<typeof trustV1>;
}

export type EventType = keyof Payloads;

/**
 * What `send` takes: an event type and its payload; the rest of the envelope is filled in when
 * missing (event_id a fresh UUID, timestamp now, version 1, source the producer's).
 */
export type AtlasEvent = {
  [T in EventType]: {
    event_type: T;
    payload: Payloads[T];
    event_id?: string;
    source?: string;
    /** Milliseconds since the epoch. */
    timestamp?: number;
    version?: 1;
  };
}[EventType];
