/**
 * The baseline of `load/ingest.ts`: a bare fastify route doing one XADD of the same fields the
 * ingest door writes — no envelope schema, no dedup, no Lua script, no sequence number. What
 * ingest reaches against this, on the same machine in the same run, is the cost of its own work.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 ATLAS_HTTP_PORT=18081 ATLAS_PREFIX=load-x node load/ingest-baseline.ts
 *
 * Listens on 127.0.0.1 only; stops on SIGTERM/SIGINT.
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { keys } from '../pipeline/keys.ts';
import { createLogger } from '../pipeline/log.ts';
import { connectFailFast, whenReady } from '../pipeline/redis.ts';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const port = Number(process.env.ATLAS_HTTP_PORT ?? 18081);
const stream = keys(process.env.ATLAS_PREFIX ?? 'load-baseline').stream('baseline');

// The same client settings the ingest door uses.
const redis = connectFailFast(
  { REDIS_URL: url, REDIS_TLS_CA_FILE: process.env.REDIS_TLS_CA_FILE ?? '' },
  'atlas-load-baseline',
  createLogger('silent'),
);

const app = Fastify({ logger: false, genReqId: () => randomUUID() });

interface Body {
  event_id: string;
  event_type: string;
  source: string;
  timestamp: number;
  version: number;
  payload: unknown;
}

app.post<{ Body: Body }>('/events', async (req, reply) => {
  const e = req.body;
  const id = await redis.xadd(
    stream,
    '*',
    'event_id',
    e.event_id,
    'event_type',
    e.event_type,
    'version',
    String(e.version),
    'source',
    e.source,
    'timestamp',
    String(e.timestamp),
    'payload',
    JSON.stringify(e.payload),
    'received_at',
    String(Date.now()),
    'request_id',
    req.id,
  );
  return reply.code(202).send({ event_id: e.event_id, id, request_id: req.id });
});

app.get('/ready', async (_req, reply) => reply.code(redis.status === 'ready' ? 200 : 503).send({}));

const stop = async () => {
  await app.close();
  redis.disconnect();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());

await whenReady(redis, 5000);
await app.listen({ port, host: '127.0.0.1' });
