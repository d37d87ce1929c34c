/**
 * Space topology: the family the pipeline was built for. Its route goes through transitive and
 * canonical; what reaches Kafka is the canonical graph (KAFKA_TOPIC_CANONICAL), not the event.
 */
import { spaceCreatedV1, trustV1 } from '../../validate/schemas.ts';
import type { EventTypeSpec, Family } from '../family.ts';

const common = { topic: 'topology.canonical', priority: 'normal', ttlMs: 0, propagation: 'full' } as const;
const trust: EventTypeSpec = { ...common, versions: { 1: trustV1 }, key: 'source_space_id' };

export const topology: Family = {
  name: 'topology',
  route: 'topology',
  description: 'spaces created, trust extended and revoked: folded into canonical graphs per root',
  types: {
    'space.created': { ...common, versions: { 1: spaceCreatedV1 }, key: 'space_id' },
    'space.trust_extended': trust,
    'space.trust_revoked': trust,
  },
};
