/**
 * A test stage in its own process, run by the real runtime (pipeline/runtime.ts `run`: the same
 * lifecycle, signal handling and shutdown bound as `atlas run`).
 *
 *   node test/support/stage-runner.ts relay|crash|singleton|ordered-singleton
 *
 * Settings come from the environment like any atlas process; test knobs: TEST_INPUT,
 * TEST_OUTPUT, TEST_STAGE_NAME, TEST_SLEEP_MS.
 */
import { loadConfig } from '../../pipeline/config.ts';
import { createLogger } from '../../pipeline/log.ts';
import { run, stageComponent } from '../../pipeline/runtime.ts';
import { pipelineStreams } from '../../stages/streams.ts';
import { type RelayOptions, relayStage } from './stages.ts';

const kind = process.argv[2] ?? 'relay';
const config = loadConfig();
const log = createLogger(config.LOG_LEVEL);

const opts: RelayOptions = {
  name: process.env.TEST_STAGE_NAME ?? kind,
  input: process.env.TEST_INPUT ?? 'in',
  output: process.env.TEST_OUTPUT ?? 'out',
  sleepMs: Number(process.env.TEST_SLEEP_MS ?? 0),
};
if (kind === 'crash') opts.crashOnMarked = true;
else if (kind === 'singleton') opts.singleton = true;
else if (kind === 'ordered-singleton') Object.assign(opts, { singleton: true, order: { seq: 'seq' } });
else if (kind !== 'relay') {
  process.stderr.write(`stage-runner: unknown kind ${kind}\n`);
  process.exit(2);
}

const component = await stageComponent(relayStage(opts), config, log);
await run([component], pipelineStreams, config, log);
log.info({ consumer: component.worker.consumer, pid: process.pid }, 'worker started');
