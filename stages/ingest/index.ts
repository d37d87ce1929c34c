/** Stage `ingest`: the HTTP door as a component of the process. */
import type { Config } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { connectFailFast, whenReady } from '../../pipeline/redis.ts';
import type { Component } from '../../pipeline/runtime.ts';
import { redactUrl } from '../../pipeline/secrets.ts';
import { buildServer } from './server.ts';

export function ingestComponent(
  config: Config,
  log: Logger,
  notReady?: () => Promise<string | null>,
): Component {
  // connection errors are logged (rate-limited) by connectFailFast; requests answer 503
  const redis = connectFailFast(config, 'atlas-ingest', log);
  const app = buildServer({ config, redis, log, ...(notReady ? { notReady } : {}) });
  return {
    name: 'ingest',
    start: async () => {
      if (!(await whenReady(redis, 5000)))
        log.warn({ url: redactUrl(config.REDIS_URL) }, 'Redis not reachable yet; answering 503 until it is');
      const address = await app.listen({ port: config.ATLAS_HTTP_PORT, host: config.ATLAS_HTTP_HOST });
      log.info({ address }, 'ingest listening');
    },
    stop: async () => {
      await app.close();
      redis.disconnect();
    },
  };
}
