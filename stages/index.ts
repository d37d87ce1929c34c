/** The stages of the pipeline, in order. `ingest` is the HTTP door; the others are stream workers. */

import { laneStages } from '../pipeline/lanes.ts';
import type { StageFactory } from '../pipeline/stage.ts';
import { createCanonical } from './canonical/index.ts';
import { createEmit } from './emit/index.ts';
import type { WorkerStageName } from './names.ts';
import { createPublish } from './publish/index.ts';
import { createSerialize } from './serialize/index.ts';
import { createTransitive } from './transitive/index.ts';
import { createValidate, createValidateCritical } from './validate/index.ts';

export { deadLetterReasons, deadLetterStages, stageNames } from './names.ts';

/** Every name of stages/names.ts, and no other (the type says so). */
export const workerStages: Record<string, StageFactory> = {
  validate: createValidate,
  'validate-critical': createValidateCritical,
  transitive: createTransitive,
  canonical: createCanonical,
  serialize: createSerialize,
  emit: createEmit,
  ...laneStages('publish', createPublish, (ctx) => ctx.config.ATLAS_LANE_WEIGHTS),
} satisfies Record<WorkerStageName, StageFactory>;
