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
