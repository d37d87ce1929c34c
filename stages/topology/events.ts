/** Topology events as they leave the validate stage: ids normalised to lowercase hex. */
import type { EventMeta } from './tree.ts';

export type SpaceType =
  | { kind: 'personal'; owner: string }
  | { kind: 'dao'; initial_editors: string[]; initial_members: string[] };

export type TrustExtension =
  | { kind: 'verified'; target_space_id: string }
  | { kind: 'related'; target_space_id: string }
  | { kind: 'subtopic'; target_topic_id: string };

export type TopologyEvent =
  | {
      event_type: 'space.created';
      space_id: string;
      topic_id: string;
      space_type: SpaceType;
      meta: EventMeta;
    }
  | {
      event_type: 'space.trust_extended';
      source_space_id: string;
      extension: TrustExtension;
      meta: EventMeta;
    }
  | {
      event_type: 'space.trust_revoked';
      source_space_id: string;
      extension: TrustExtension;
      meta: EventMeta;
    };
