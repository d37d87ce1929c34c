/**
 * Process lifecycle: start the chosen components (stage workers, the HTTP door), stop them
 * all on SIGTERM/SIGINT within ATLAS_SHUTDOWN_MS, and serve /metrics when asked to.
 */
import { createServer } from 'node:http';
import { tokenFor } from './auth.ts';
import { chain } from './chain.ts';
import type { Config } from './config.ts';
import { ControlRunner } from './control.ts';
import { runtimeJobs } from './control-jobs.ts';
import { keys } from './keys.ts';
import type { Logger } from './log.ts';
import { registry } from './metrics.ts';
import { reportPipeline } from './pipeline-gauges.ts';
import { connectFailFast, connectWorker } from './redis.ts';
import type { Stage, StageContext, StageFactory } from './stage.ts';
import { startTracing, stopTracing } from './tracing.ts';
import { Worker } from './worker.ts';

export interface Component {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** null when ready, else why not. */
  notReady?(): Promise<string | null> | string | null;
}

/**
 * A stage as a component: its own Redis connection (blocking reads) and worker. Several
 * factories make one chain of them (`pipeline/chain.ts`), run and committed as one stage.
 */
export async function stageComponent(
  factory: StageFactory | StageFactory[],
  config: Config,
  log: Logger,
): Promise<Component & { worker: Worker }> {
  const redis = connectWorker(config, 'atlas-stage', log);
  // The worker owns the lease and needs the stage first: the getter reads it once both exist.
  let worker: Worker | undefined;
  const lease = () => worker?.fence;
  const ctx: StageContext = { config, redis, keys: keys(config.ATLAS_PREFIX), log, lease };
  const factories = Array.isArray(factory) ? factory : [factory];
  const stages: Stage[] = [];
  for (const f of factories) stages.push(await f(ctx));
  const stage = stages.length === 1 ? stages[0]! : chain(stages, redis, ctx.keys, log);
  worker = new Worker(stage, redis, ctx.keys, config, log);
  const control = controlOf(worker, stage, ctx, config, log);
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
      await control.close();
      redis.disconnect();
    },
    notReady: () => worker.notReady(),
  };
}

/** The stage's control jobs (its own and the runtime's), run by its worker between batches. */
function controlOf(
  worker: Worker,
  stage: Awaited<ReturnType<StageFactory>>,
  ctx: StageContext,
  config: Config,
  log: Logger,
): { close(): Promise<void> } {
  const connection = connectWorker(config, 'atlas-control', log);
  const runner = new ControlRunner({
    stage: stage.name,
    handlers: { ...runtimeJobs(stage, ctx.keys), ...stage.jobs },
    connection,
    keys: ctx.keys,
    log: log.child({ stage: stage.name, component: 'control' }),
  });
  worker.betweenBatches = () =>
    runner.runDue({
      redis: ctx.redis,
      keys: ctx.keys,
      commit: (fill) => worker.commitJob(fill),
      quiesce: () => worker.quiesce(),
    });
  return {
    close: async () => {
      await runner.close();
      connection.disconnect();
    },
  };
}

/** Runs `components`; `streams` are the pipeline's stream names (the stages layer's), for the lag gauges. */
export async function run(
  components: Component[],
  streams: readonly string[],
  config: Config,
  log: Logger,
): Promise<void> {
  // Before any component starts, so the first request and the first batch are traced.
  await startTracing('atlas', log);
  const metricsServer = config.ATLAS_METRICS_PORT > 0 ? serveOps(config, components, log) : undefined;
  // Stage processes only: the door's Redis user may not read the other streams or the DLQ.
  // Read only when scraped (the operator listener, or the door's /metrics in the same process).
  const pipeline = components.some((c) => 'worker' in c) ? pipelineGauges(streams, config, log) : undefined;
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
    // After the components: the spans of their last batches are exported too.
    await stopTracing(log);
    metricsServer?.close();
    pipeline?.();
    clearTimeout(deadline);
    log.info('stopped cleanly');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stopAll('SIGTERM'));
  process.once('SIGINT', () => void stopAll('SIGINT'));
  for (const c of components) await c.start();
  log.info({ components: components.map((c) => c.name) }, 'running');
}

/** Reports the pipeline gauges (lag, DLQ) on a connection of their own; returns how to stop. */
function pipelineGauges(streams: readonly string[], config: Config, log: Logger): () => void {
  const redis = connectFailFast(config, 'atlas-metrics', log);
  const stop = reportPipeline(redis, keys(config.ATLAS_PREFIX), streams, log);
  return () => {
    stop();
    redis.disconnect();
  };
}

/** Why the first component that is not ready is not, or null. */
export async function componentsNotReady(components: Component[]): Promise<string | null> {
  for (const c of components) {
    const why = await c.notReady?.();
    if (why) return `${c.name}: ${why}`;
  }
  return null;
}

/**
 * The operator's listener of every process (ATLAS_METRICS_PORT): /health (alive), /ready (every
 * component of this process ready) and /metrics. A port already taken is reported, not fatal:
 * the stages keep running without it.
 */
function serveOps(config: Config, components: Component[], log: Logger) {
  const tokens = config.ATLAS_AUTH_TOKENS;
  const server = createServer(async (req, res) => {
    const path = req.url?.split('?')[0];
    // The same tokens as the door: with authentication on, only liveness is open.
    if (path !== '/health' && tokens.length > 0 && !tokenFor(tokens, req.headers.authorization)) {
      res.setHeader('www-authenticate', 'Bearer realm="atlas"');
      json(res, 401, {
        error: 'unauthorized',
        message: 'this route needs an Authorization: Bearer <token> header',
      });
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
    } else if (path === '/health') {
      json(res, 200, { status: 'ok' });
    } else if (path === '/ready') {
      const why = await componentsNotReady(components);
      json(res, why ? 503 : 200, why ? { status: 'not_ready', reason: why } : { status: 'ready' });
    } else json(res, 404, { error: 'not_found' });
  });
  server.on('error', (err) =>
    log.error(
      { err, port: config.ATLAS_METRICS_PORT },
      'operator listener (/health, /ready, /metrics) could not start: give each process its own ATLAS_METRICS_PORT (0 = none)',
    ),
  );
  server.on('listening', () => log.info({ address: server.address() }, 'operator listener up'));
  return server.listen(config.ATLAS_METRICS_PORT, config.ATLAS_METRICS_HOST);
}

function json(res: import('node:http').ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
