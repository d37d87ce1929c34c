/**
 * Dead-letter reasons: every `reason` a DLQ entry can carry. The runtime's own are here; the
 * stages contribute theirs from the stages layer (stages/dead-letter-reasons.ts) by merging into
 * `StageDeadLetterReasons`, so pipeline/ names no stage's reason, and the stages and the runtime
 * name reasons only through `DeadLetterReason`: a reason not declared in one of the two does not
 * compile.
 */
export const runtimeDeadLetterReasons = {
  max_deliveries: 'delivered more than ATLAS_MAX_DELIVERIES times (poison)',
  handler_error: 'the stage failed on that one entry every time',
  blob_missing: 'a claim-check blob the entry refers to is gone',
  blob_corrupt: 'a claim-check blob does not match its hash',
  bad_sequence: 'the order field of an order-sensitive stage is not a sequence number',
} as const;

/** The stages' reasons by name, declared by the stages layer (`declare module`), with what each means. */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging from the stages layer
export interface StageDeadLetterReasons {}

export type DeadLetterReason = keyof typeof runtimeDeadLetterReasons | keyof StageDeadLetterReasons;
