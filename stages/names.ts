/**
 * The stages' names and dead-letter reasons without their code: what the CLI checks arguments
 * against and lists, without loading every stage (protobuf, kafkajs) for each command.
 * stages/index.ts maps each name to its factory, and its type keeps the two lists in step.
 */
import { pipelineReasons } from '../pipeline/dlq.ts';

/** The stream workers, in pipeline order. */
export const workerStageNames = ['validate', 'transitive', 'canonical', 'serialize', 'emit'] as const;
export type WorkerStageName = (typeof workerStageNames)[number];

/** Every stage: `ingest` is the HTTP door, the others are stream workers. */
export const stageNames: string[] = ['ingest', ...workerStageNames];

/** The stages that dead-letter (the door refuses at the door instead). */
export const deadLetterStages: readonly string[] = workerStageNames;

/** Every reason a dead letter can carry: the runtime's, then the stages' own rejections. */
export const deadLetterReasons = [
  ...pipelineReasons,
  'invalid_payload',
  'unknown_event_type',
  'space_conflict',
] as const;
