/** Topology events in the HTTP envelope format, for the door and the validate stage. */
import { randomUUID } from 'node:crypto';

/** A 16-byte id as 32 lowercase hex chars, from a small number. */
export const spaceId = (n: number): string => n.toString(16).padStart(32, '0');
export const topicId = (n: number): string => `7${n.toString(16).padStart(31, '0')}`;
export const address = (n: number): string => n.toString(16).padStart(64, 'a');

export interface Envelope {
  event_id: string;
  event_type: string;
  source: string;
  timestamp: number;
  version: number;
  payload: Record<string, unknown>;
}

export const meta = (block = 1) => ({
  block_number: block,
  block_timestamp: 1_700_000_000 + block,
  tx_hash: `0x${block.toString(16).padStart(64, '0')}`,
  cursor: `cursor-${block}`,
});

export function envelope(
  event_type: string,
  payload: Record<string, unknown>,
  overrides: Partial<Envelope> = {},
): Envelope {
  return {
    event_id: randomUUID(),
    event_type,
    source: 'test',
    timestamp: Date.now(),
    version: 1,
    payload,
    ...overrides,
  };
}

export function spaceCreated(n: number, overrides: Partial<Envelope> = {}): Envelope {
  return envelope(
    'space.created',
    {
      space_id: spaceId(n),
      topic_id: topicId(n),
      space_type: { kind: 'personal', owner: address(n) },
      meta: meta(n),
    },
    overrides,
  );
}

export function trustExtended(from: number, to: number, overrides: Partial<Envelope> = {}): Envelope {
  return envelope(
    'space.trust_extended',
    {
      source_space_id: spaceId(from),
      extension: { kind: 'verified', target_space_id: spaceId(to) },
      meta: meta(from),
    },
    overrides,
  );
}
