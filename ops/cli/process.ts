/** `atlas up` / `atlas run`: build the chosen stages as components of this process and run them. */
import type { Config } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { type Component, componentsNotReady, run, stageComponent } from '../../pipeline/runtime.ts';
import { stageNames, workerStages } from '../../stages/index.ts';
import { ingestComponent } from '../../stages/ingest/index.ts';
import { UsageError } from './errors.ts';

export async function runStages(names: string[], config: Config, log: Logger): Promise<void> {
  const unknown = names.filter((n) => !stageNames.includes(n));
  if (unknown.length > 0)
    throw new UsageError(`unknown stage(s): ${unknown.join(', ')}; stages: ${stageNames.join(', ')}`);
  const components: Component[] = [];
  for (const name of names) {
    const factory = workerStages[name];
    if (factory) components.push(await stageComponent(factory, config, log));
  }
  if (names.includes('ingest')) {
    components.unshift(ingestComponent(config, log, () => componentsNotReady(components.slice(1))));
  }
  await run(components, config, log);
}
