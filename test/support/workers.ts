/** In-process stage workers on real Redis, stopped after the test. */
import type { Config } from '../../pipeline/config.ts';
import { type Component, stageComponent } from '../../pipeline/runtime.ts';
import type { StageFactory } from '../../pipeline/stage.ts';
import type { Worker } from '../../pipeline/worker.ts';
import { testLog } from './config.ts';

export type RunningStage = Component & { worker: Worker };

const started = new Set<RunningStage>();

export async function startStage(
  factory: StageFactory | StageFactory[],
  config: Config,
): Promise<RunningStage> {
  const component = await stageComponent(factory, config, testLog);
  await component.start();
  started.add(component);
  const stop = component.stop;
  component.stop = async () => {
    started.delete(component);
    await stop();
  };
  return component;
}

/** Stops every in-process stage still running (afterEach/afterAll safety net). */
export async function stopStages(): Promise<void> {
  await Promise.all([...started].map((c) => c.stop()));
}
