/** Stage `ingest`: the HTTP door, and the gRPC door beside it (ATLAS_GRPC_PORT), as a component of the process. */
import type { Config } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { connectFailFast, whenReady } from '../../pipeline/redis.ts';
import type { Component } from '../../pipeline/runtime.ts';
import { redactUrl } from '../../pipeline/secrets.ts';
import { type GrpcDoor, startGrpc } from '../grpc/server.ts';
import { buildServer } from './server.ts';

export function ingestComponent(
  config: Config,
  log: Logger,
  notReady?: () => Promise<string | null>,
): Component {
  // connection errors are logged (rate-limited) by connectFailFast; requests answer 503
  const redis = connectFailFast(config, 'atlas-ingest', log);
  const app = buildServer({ config, redis, log, ...(notReady ? { notReady } : {}) });
  let grpc: GrpcDoor | undefined;
  return {
    name: 'ingest',
    start: async () => {
      if (!(await whenReady(redis, 5000)))
        log.warn({ url: redactUrl(config.REDIS_URL) }, 'Redis not reachable yet; answering 503 until it is');
      const address = await app.listen({ port: config.ATLAS_HTTP_PORT, host: config.ATLAS_HTTP_HOST });
      log.info({ address }, 'ingest listening');
      if (config.ATLAS_GRPC_PORT > 0) {
        const parts = { config, door: app.door, subscriptions: app.subscriptions, log };
        grpc = await startGrpc(parts, config.ATLAS_GRPC_PORT, config.ATLAS_GRPC_HOST);
        log.info({ port: grpc.port, host: config.ATLAS_GRPC_HOST }, 'gRPC listening');
      }
    },
    stop: async () => {
      await grpc?.stop();
      await app.close();
      redis.disconnect();
    },
  };
}
