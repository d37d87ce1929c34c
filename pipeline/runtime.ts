/**
 * Process lifecycle: start the chosen components (stage workers, the HTTP door), stop them
 * all on SIGTERM/SIGINT within ATLAS_SHUTDOWN_MS, and serve /metrics when asked to.
 */
import { createServer } from 'node:http';
import type { Config } from './config.ts';
import { keys } from './keys.ts';
import type { Logger } from './log.ts';
import { registry } from './metrics.ts';
import { connectWorker } from './redis.ts';
import type { StageContext, StageFactory } from './stage.ts';
import { Worker } from './worker.ts';

export interface Component {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** null when ready, else why not. */
  notReady?(): Promise<string | null> | string | null;
}

/** A stage as a component: its own Redis connection (blocking reads) and worker. */
export async function stageComponent(
  factory: StageFactory,
  config: Config,
  log: Logger,
): Promise<Component & { worker: Worker }> {
  const redis = connectWorker(config.REDIS_URL, 'atlas-stage');
  // The worker owns the lease and needs the stage first: the getter reads it once both exist.
  let worker: Worker | undefined;
  const lease = () => worker?.fence;
  const ctx: StageContext = { config, redis, keys: keys(config.ATLAS_PREFIX), log, lease };
  const stage = await factory(ctx);
  worker = new Worker(stage, redis, ctx.keys, config, log);
  let running: Promise<void> | undefined;
  return {
    name: stage.name,
    worker,
    start: async () => {
      running = worker.start();
    },
    stop: async () => {
      await worker.stop();
      await running;
      redis.disconnect();
    },
    notReady: () => stage.notReady?.() ?? (worker.isPaused ? 'output over high-water mark' : null),
  };
}

export async function run(components: Component[], config: Config, log: Logger): Promise<void> {
  const metricsServer = config.ATLAS_METRICS_PORT > 0 ? serveMetrics(config.ATLAS_METRICS_PORT) : undefined;
  let stopping = false;
  const stopAll = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const deadline = setTimeout(() => {
      log.error(`did not stop within ${config.ATLAS_SHUTDOWN_MS} ms; exiting`);
      process.exit(1);
    }, config.ATLAS_SHUTDOWN_MS);
    await Promise.allSettled(components.map((c) => c.stop()));
    metricsServer?.close();
    clearTimeout(deadline);
    log.info('stopped cleanly');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stopAll('SIGTERM'));
  process.once('SIGINT', () => void stopAll('SIGINT'));
  for (const c of components) await c.start();
  log.info({ components: components.map((c) => c.name) }, 'running');
}

function serveMetrics(port: number) {
  const server = createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
  });
  return server.listen(port, '127.0.0.1');
}
