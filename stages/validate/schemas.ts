/**
 * Payload schemas per (event_type, version). Parsing normalises: ids to lowercase hex,
 * u64 numbers to decimal strings (a JSON number or a decimal string in, no precision lost).
 */
import { z } from 'zod';
import type { TopologyEvent } from '../topology/events.ts';
import { normalizeHex } from '../topology/ids.ts';

const U64_MAX = 2n ** 64n - 1n;

const hexId = (bytes: number, what: string) =>
  z.string().transform((raw, ctx) => {
    const id = normalizeHex(raw, bytes);
    if (id === null) {
      ctx.addIssue({
        code: 'custom',
        message: `${what}: expected ${bytes * 2} hex chars (0x prefix or dashed UUID form allowed)`,
      });
      return z.NEVER;
    }
    return id;
  });

const spaceId = hexId(16, 'space id');
const topicId = hexId(16, 'topic id');
const address = hexId(32, 'address');

const u64 = z.union([z.number(), z.string()]).transform((raw, ctx) => {
  const text = typeof raw === 'number' ? (Number.isSafeInteger(raw) ? String(raw) : '') : raw;
  if (!/^\d{1,20}$/.test(text) || BigInt(text) > U64_MAX || (typeof raw === 'number' && raw < 0)) {
    ctx.addIssue({
      code: 'custom',
      message: 'expected an unsigned 64-bit integer (JSON number or decimal string)',
    });
    return z.NEVER;
  }
  return BigInt(text).toString();
});

const meta = z.object({
  block_number: u64,
  block_timestamp: u64,
  tx_hash: z.string().min(1).max(130),
  cursor: z.string().max(1024),
  created_by: address.optional(),
});

const spaceType = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('personal'), owner: address }),
  z.object({ kind: z.literal('dao'), initial_editors: z.array(address), initial_members: z.array(address) }),
]);

const extension = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('verified'), target_space_id: spaceId }),
  z.object({ kind: z.literal('related'), target_space_id: spaceId }),
  z.object({ kind: z.literal('subtopic'), target_topic_id: topicId }),
]);

// Exported by name so their input types (z.input) give the producer client typed payloads.
export const spaceCreatedV1 = z.object({ space_id: spaceId, topic_id: topicId, space_type: spaceType, meta });
export const trustV1 = z.object({ source_space_id: spaceId, extension, meta });

export const payloadSchemas: Record<string, Record<number, z.ZodType>> = {
  'space.created': { 1: spaceCreatedV1 },
  'space.trust_extended': { 1: trustV1 },
  'space.trust_revoked': { 1: trustV1 },
};

export type Validation =
  | { ok: true; event: TopologyEvent }
  | { ok: false; reason: 'invalid_payload' | 'unknown_event_type'; message: string; issues?: unknown };

export function validateEvent(eventType: string, version: number, payload: unknown): Validation {
  const schema = payloadSchemas[eventType]?.[version];
  if (!schema) {
    return {
      ok: false,
      reason: 'unknown_event_type',
      message: `no schema for event_type ${eventType} version ${version}`,
    };
  }
  const result = schema.safeParse(payload);
  if (!result.success) {
    const issues = result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    const message = issues.map((i) => `${i.path || '(payload)'}: ${i.message}`).join('; ');
    return { ok: false, reason: 'invalid_payload', message, issues };
  }
  return { ok: true, event: { event_type: eventType, ...(result.data as object) } as TopologyEvent };
}
