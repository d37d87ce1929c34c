/**
 * The stages' dead-letter reasons, added to the runtime's (pipeline/dead-letter-reasons.ts) so
 * that `DeadLetterReason` names them too, and the one catalogue of both, which the CLI checks
 * arguments against and the README lists. A stage's new reason is added here or it does not
 * compile.
 */
import { type DeadLetterReason, runtimeDeadLetterReasons } from '../pipeline/dead-letter-reasons.ts';

export const stageDeadLetterReasons = {
  invalid_payload: 'the payload is not JSON, or does not match its schema (validate)',
  unknown_event_type: 'no event family declares the event type (validate)',
  unsupported_version: 'the family does not declare the envelope version (validate)',
  expired: 'past its time to live before delivery (publish)',
  space_conflict: 'space.created for an existing space with another topic (transitive)',
} as const;

type Contributed = typeof stageDeadLetterReasons;

declare module '../pipeline/dead-letter-reasons.ts' {
  interface StageDeadLetterReasons extends Contributed {}
}

/** Every reason a dead letter can carry, with what it means. */
export const deadLetterCatalogue: Record<DeadLetterReason, string> = {
  ...stageDeadLetterReasons,
  ...runtimeDeadLetterReasons,
};
