/** Stage `ingest`: the HTTP door as a component of the process. */
import type { Config } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { connectFailFast, whenReady } from '../../pipeline/redis.ts';
import type { Component } from '../../pipeline/runtime.ts';
import { buildServer } from './server.ts';

export function ingestComponent(
  config: Config,
  log: Logger,
  notReady?: () => Promise<string | null>,
): Component {
  const redis = connectFailFast(config.REDIS_URL, 'atlas-ingest');
  redis.on('error', () => {}); // reported per request as 503 and by /ready
  const app = buildServer({ config, redis, log, ...(notReady ? { notReady } : {}) });
  return {
    name: 'ingest',
    start: async () => {
      if (!(await whenReady(redis, 5000)))
        log.warn({ url: config.REDIS_URL }, 'Redis not reachable yet; answering 503 until it is');
      const address = await app.listen({ port: config.ATLAS_HTTP_PORT, host: config.ATLAS_HTTP_HOST });
      log.info({ address }, 'ingest listening');
    },
    stop: async () => {
      await app.close();
      redis.disconnect();
    },
  };
}
