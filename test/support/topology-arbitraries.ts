/**
 * Random topology events for the graph property tests: ids from small pools (dense graphs, many
 * cycles and ties) and a mix of creations, explicit edges and topic edges that each test weighs.
 */
import fc from 'fast-check';
import type { TopologyEvent } from '../../stages/topology/events.ts';
import type { EventMeta } from '../../stages/topology/tree.ts';

export const propertyMeta: EventMeta = {
  block_number: '1',
  block_timestamp: '1',
  tx_hash: '0x00',
  cursor: 'c',
};

/** `n` ids with scattered first bytes (`stride`), so byte order is unrelated to pool order. */
export function idPool(n: number, salt: number, filler: string, stride = 97): string[] {
  return Array.from(
    { length: n },
    (_, i) => ((i * stride + salt) % 256).toString(16).padStart(2, '0') + filler.repeat(15),
  );
}

/** Relative weights of the three kinds of event; `extendedPerRevoked` biases towards growth. */
export interface EventMix {
  created: number;
  explicit: number;
  subtopic: number;
  extendedPerRevoked?: 1 | 2;
}

export function topologyEvent(
  spaces: readonly string[],
  topics: readonly string[],
  mix: EventMix,
  meta: EventMeta = propertyMeta,
): fc.Arbitrary<TopologyEvent> {
  const space = fc.constantFrom(...spaces);
  const topic = fc.constantFrom(...topics);
  const types = ['space.trust_extended', 'space.trust_revoked'] as const;
  const type = fc.constantFrom(...(mix.extendedPerRevoked === 2 ? [...types, types[0]] : types));
  const kind = fc.constantFrom('verified' as const, 'related' as const);
  return fc.oneof(
    {
      weight: mix.created,
      arbitrary: fc.tuple(space, topic).map(
        ([space_id, topic_id]): TopologyEvent => ({
          event_type: 'space.created',
          space_id,
          topic_id,
          space_type: { kind: 'personal', owner: '00'.repeat(32) },
          meta,
        }),
      ),
    },
    {
      weight: mix.explicit,
      arbitrary: fc.tuple(type, space, kind, space).map(
        ([event_type, source_space_id, kind, target_space_id]): TopologyEvent => ({
          event_type,
          source_space_id,
          extension: { kind, target_space_id },
          meta,
        }),
      ),
    },
    {
      weight: mix.subtopic,
      arbitrary: fc.tuple(type, space, topic).map(
        ([event_type, source_space_id, target_topic_id]): TopologyEvent => ({
          event_type,
          source_space_id,
          extension: { kind: 'subtopic', target_topic_id },
          meta,
        }),
      ),
    },
  );
}
