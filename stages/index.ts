/** The stages of the pipeline, in order. `ingest` is the HTTP door; the others are stream workers. */
import type { StageFactory } from '../pipeline/stage.ts';
import { createValidate } from './validate/index.ts';

export const workerStages: Record<string, StageFactory> = {
  validate: createValidate,
};

export const stageNames = ['ingest', ...Object.keys(workerStages)];
