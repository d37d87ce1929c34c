/**
 * Claim-check: a field larger than the threshold is stored once as a sha256-addressed blob and
 * the entry carries `<field>@blob = <sha256>`; readers resolve it and verify the hash.
 */

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { DeadLetterReason } from './dead-letter-reasons.ts';
import type { Entry } from './entry.ts';
import type { Keys } from './keys.ts';

export const BLOB_SUFFIX = '@blob';

export interface Blob {
  sha: string;
  bytes: Buffer;
}

export class BlobError extends Error {
  readonly reason: Extract<DeadLetterReason, 'blob_missing' | 'blob_corrupt'>;
  constructor(reason: Extract<DeadLetterReason, 'blob_missing' | 'blob_corrupt'>, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Whether a flat field list carries blob references (so the scripts count them). */
export function hasBlobRefs(flat: readonly (string | Buffer)[]): boolean {
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i];
    if (typeof name === 'string' && name.endsWith(BLOB_SUFFIX)) return true;
  }
  return false;
}

/** Replaces large fields by references; returns the flat field list and the blobs to store. */
export function checkFields(
  fields: Record<string, string | Buffer>,
  threshold: number,
): { flat: (string | Buffer)[]; blobs: Blob[] } {
  const flat: (string | Buffer)[] = [];
  const blobs: Blob[] = [];
  for (const [name, value] of Object.entries(fields)) {
    const size = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
    if (size <= threshold) {
      flat.push(name, value);
      continue;
    }
    const bytes = typeof value === 'string' ? Buffer.from(value) : value;
    const sha = createHash('sha256').update(bytes).digest('hex');
    blobs.push({ sha, bytes });
    flat.push(name + BLOB_SUFFIX, sha);
  }
  return { flat, blobs };
}

/** Resolves every `@blob` field of the entries in place, with one MGET for the lot. */
export async function resolveBlobs(
  redis: Redis,
  keys: Keys,
  entries: Entry[],
): Promise<Map<Entry, BlobError>> {
  const wanted: Array<{ entry: Entry; field: string; sha: string }> = [];
  for (const entry of entries) {
    for (const [field, value] of entry.fields) {
      if (field.endsWith(BLOB_SUFFIX)) wanted.push({ entry, field, sha: value.toString('utf8') });
    }
  }
  const failed = new Map<Entry, BlobError>();
  if (wanted.length === 0) return failed;
  const values = await redis.mgetBuffer(...wanted.map((w) => keys.blob(w.sha)));
  wanted.forEach(({ entry, field, sha }, i) => {
    const bytes = values[i];
    const name = field.slice(0, -BLOB_SUFFIX.length);
    if (!bytes) {
      failed.set(entry, new BlobError('blob_missing', `blob ${sha} of field ${name} is missing`));
    } else if (createHash('sha256').update(bytes).digest('hex') !== sha) {
      failed.set(
        entry,
        new BlobError('blob_corrupt', `blob ${sha} of field ${name} does not match its hash`),
      );
    } else {
      entry.fields.set(name, bytes);
    }
  });
  return failed;
}
