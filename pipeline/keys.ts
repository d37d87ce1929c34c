import { laneStream, lanes } from './lanes.ts';

/**
 * Key names. Every key carries the hash tag `{prefix}` so that each multi-key atomic step
 * (read stream, output stream, DLQ, blobs, checkpoints) lands in one Redis Cluster slot.
 */
export interface Keys {
  readonly prefix: string;
  stream(name: string): string;
  readonly dlq: string;
  /** The DLQ's counts by stage and reason (pipeline/scripts/lib/dlq-counts.lua). */
  readonly dlqCounts: string;
  readonly seq: string;
  readonly blobRefs: string;
  blob(sha256: string): string;
  /** Stage-owned keys: checkpoints, leases, dedup. */
  of(...parts: string[]): string;
}

export function keys(prefix: string): Keys {
  const tag = `{${prefix}}`;
  return {
    prefix,
    stream: (name) => `${tag}:${name}`,
    dlq: `${tag}:dlq`,
    dlqCounts: `${tag}:dlq-counts`,
    seq: `${tag}:seq`,
    blobRefs: `${tag}:blob-refs`,
    blob: (sha256) => `${tag}:blob:${sha256}`,
    of: (...parts) => [tag, ...parts].join(':'),
  };
}

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
