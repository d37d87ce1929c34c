/** The stages of the pipeline, in order. `ingest` is the HTTP door; the others are stream workers. */
import { pipelineReasons } from '../pipeline/dlq.ts';
import type { StageFactory } from '../pipeline/stage.ts';
import { createCanonical } from './canonical/index.ts';
import { createEmit } from './emit/index.ts';
import { createSerialize } from './serialize/index.ts';
import { createTransitive } from './transitive/index.ts';
import { createValidate } from './validate/index.ts';

export const workerStages: Record<string, StageFactory> = {
  validate: createValidate,
  transitive: createTransitive,
  canonical: createCanonical,
  serialize: createSerialize,
  emit: createEmit,
};

export const stageNames = ['ingest', ...Object.keys(workerStages)];

/** The stages that dead-letter (the door refuses at the door instead). */
export const deadLetterStages = Object.keys(workerStages);

/** Every reason a dead letter can carry: the runtime's, then the stages' own rejections. */
export const deadLetterReasons = [
  ...pipelineReasons,
  'invalid_payload',
  'unknown_event_type',
  'space_conflict',
] as const;
