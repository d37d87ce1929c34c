/**
 * The stages' names and dead-letter reasons without their code: what the CLI checks arguments
 * against and lists, without loading every stage (protobuf, kafkajs) for each command.
 * stages/index.ts maps each name to its factory, and its type keeps the two lists in step.
 */
import type { DeadLetterReason } from '../pipeline/dead-letter-reasons.ts';
import { lanes } from '../pipeline/lanes.ts';
import { deadLetterCatalogue } from './dead-letter-reasons.ts';

/** The stream workers, in pipeline order: the topology route, then the families' publish lanes. */
export const workerStageNames = [
  'validate',
  'validate-critical',
  'transitive',
  'canonical',
  'serialize',
  'emit',
  ...lanes.map((lane) => `publish-${lane}` as const),
] as const;
export type WorkerStageName = (typeof workerStageNames)[number];

/** Every stage: `ingest` is the HTTP door, the others are stream workers. */
export const stageNames: string[] = ['ingest', ...workerStageNames];

/** The stages that dead-letter (the door refuses at the door instead). */
export const deadLetterStages: readonly string[] = workerStageNames;

/** Every reason a dead letter can carry (the runtime's and the stages': stages/dead-letter-reasons.ts). */
export const deadLetterReasons = Object.keys(deadLetterCatalogue) as DeadLetterReason[];
