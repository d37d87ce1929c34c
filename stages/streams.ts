/**
 * The stages' stream contracts: every stream the stages read and write, by name, with the fields
 * its entries and its skip markers hold. The runtime (pipeline/) knows no stream by name: what it needs — the
 * pipeline order for `atlas streams` and the lag gauges, the door's streams for its ACL user — it is
 * given from here. Each marker also carries the fields the runtime itself carries from an input to
 * what is sent for it (`received_at`, `traceparent`: pipeline/carried.ts), so they are not listed.
 */
import type { DoorStreams } from '../pipeline/acl.ts';
import { laneStream, lanes } from '../pipeline/lanes.ts';

/** Base name of the generic families' lane streams (`events:<lane>`). */
export const EVENTS = 'events';

/** Stream names of the stages, in pipeline order. */
export const streams = {
  ingest: 'ingest',
  /** Critical events, appended by the door beside `ingest` (pipeline/lanes.ts). */
  ingest_critical: laneStream('ingest', 'critical'),
  validated: 'validated',
  transitive: 'transitive',
  canonical: 'canonical',
  serialized: 'serialized',
  /** Validated events of the generic families, one stream per priority lane (pipeline/lanes.ts). */
  ...Object.fromEntries(lanes.map((lane) => [`events_${lane}`, laneStream(EVENTS, lane)])),
} as const;

/** Every stream of the stages in pipeline order (`atlas streams`, the lag gauges). */
export const pipelineStreams: readonly string[] = Object.values(streams);

/** What the entries of a stream hold (besides the carried fields), and what its skip markers hold. */
export interface StreamContract {
  /** Fields every entry that is not a skip marker has (a large one as `<field>@blob`, claim-checked). */
  readonly fields: readonly string[];
  /**
   * Fields of the skip marker (`skip: <reason>`) a stage leaves on the stream for an input it
   * dead-lettered or routed elsewhere, keeping the order field dense for the stage downstream.
   */
  readonly marker?: readonly string[];
}

/** The contracts of the topology route's streams, each written by one stage (`seq` is the door's). */
export const contracts = {
  ingest: {
    fields: ['seq', 'event_id', 'event_type', 'version', 'source', 'timestamp', 'payload', 'request_id'],
  },
  /** transitive reads `seq` in dense order. */
  validated: { fields: ['seq', 'event_id', 'event_type', 'event'], marker: ['seq', 'event_id'] },
  /** canonical reads `out_seq` in dense order. */
  transitive: { fields: ['root', 'hash', 'delta', 'event_seq', 'event_id', 'out_seq'] },
  canonical: { fields: ['root', 'sequence_number', 'event_seq', 'hash', 'delta'] },
  /** emit keeps the per-root `sequence_number` of the updates it publishes. */
  serialized: {
    fields: ['root', 'sequence_number', 'message', 'summary', 'value'],
    marker: ['root', 'sequence_number'],
  },
} as const satisfies Partial<Record<keyof typeof streams, StreamContract>>;

/** Stored `local` events of one event type (queried by GET /events and `atlas events query`). */
export function localStream(eventType: string): string {
  return `local:${eventType}`;
}

/** Where the publish stage writes without KAFKA_BROKER (the Redis stream sink of a topic). */
export function outStream(topic: string): string {
  return `out:${topic}`;
}

/** The door appends to the ingest lanes and reads the stored local events (GET /events). */
export const doorStreams: DoorStreams = {
  writes: [streams.ingest, streams.ingest_critical],
  // the stored local events (GET /events), and the lanes the backlog watch's 429 covers
  reads: [localStream('*'), ...lanes.map((lane) => laneStream(EVENTS, lane))],
};
