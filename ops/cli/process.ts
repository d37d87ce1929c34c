/** `atlas up` / `atlas run`: build the chosen stages as components of this process and run them. */
import { ChainConfigError } from '../../pipeline/chain.ts';
import type { Config } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { type Component, componentsNotReady, run, stageComponent } from '../../pipeline/runtime.ts';
import type { StageFactory } from '../../pipeline/stage.ts';
import { stageNames, workerStages } from '../../stages/index.ts';
import { ingestComponent } from '../../stages/ingest/index.ts';
import { pipelineStreams } from '../../stages/streams.ts';
import { UsageError } from './errors.ts';

/**
 * Runs `names`: each a stage, or a chain of stages joined by `+` (`validate+transitive`), which
 * runs as one stage without the streams between its parts.
 */
export async function runStages(names: string[], config: Config, log: Logger): Promise<void> {
  const units = names.map((n) => n.split('+'));
  const all = units.flat();
  const unknown = all.filter((n) => !stageNames.includes(n));
  if (unknown.length > 0)
    throw new UsageError(`unknown stage(s): ${unknown.join(', ')}; stages: ${stageNames.join(', ')}`);
  const twice = all.filter((n, i) => all.indexOf(n) !== i);
  if (twice.length > 0) throw new UsageError(`stage(s) named twice: ${[...new Set(twice)].join(', ')}`);
  if (units.some((u) => u.length > 1 && u.includes('ingest')))
    throw new UsageError('ingest is the HTTP door and cannot be chained');
  const components: Component[] = [];
  for (const unit of units) {
    const factories = unit.map((n) => workerStages[n]).filter((f): f is StageFactory => f !== undefined);
    if (factories.length === 0) continue;
    try {
      components.push(await stageComponent(factories, config, log));
    } catch (err) {
      if (err instanceof ChainConfigError) throw new UsageError(err.message);
      throw err;
    }
  }
  if (all.includes('ingest')) {
    components.unshift(ingestComponent(config, log, () => componentsNotReady(components.slice(1))));
  }
  await run(components, pipelineStreams, config, log);
}

/** What `atlas up` runs: every stage, the chains of ATLAS_CHAINS as one unit each. */
export function upStages(config: Config): string[] {
  const chains = config.ATLAS_CHAINS.split(',')
    .map((c) => c.trim())
    .filter((c) => c.length > 0);
  const chained = new Set(chains.flatMap((c) => c.split('+')));
  return [...stageNames.filter((n) => !chained.has(n)), ...chains];
}
