/**
 * The one catalogue of dead-letter reasons: every `reason` a DLQ entry can carry, with what it
 * means. Stages and the runtime name reasons only through this type, so a new reason is added
 * here (and to the README's list) or it does not compile.
 */
export const deadLetterReasons = {
  invalid_payload: 'the payload is not JSON, or does not match its schema (validate)',
  unknown_event_type: 'no event family declares the event type (validate)',
  unsupported_version: 'the family does not declare the envelope version (validate)',
  expired: 'past its time to live before delivery (publish)',
  space_conflict: 'space.created for an existing space with another topic (transitive)',
  max_deliveries: 'delivered more than ATLAS_MAX_DELIVERIES times (poison)',
  handler_error: 'the stage failed on that one entry every time',
  blob_missing: 'a claim-check blob the entry refers to is gone',
  blob_corrupt: 'a claim-check blob does not match its hash',
  bad_sequence: 'the order field of an order-sensitive stage is not a sequence number',
} as const;

export type DeadLetterReason = keyof typeof deadLetterReasons;
