/**
 * The HTTP door (fastify): POST /events, POST /events/batch, GET /health, /ready, /metrics.
 * Every answer is JSON with the request id; Redis trouble is a 503 within a second.
 */
import { randomUUID } from 'node:crypto';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Redis } from 'ioredis';
import { backlog } from '../../pipeline/backlog.ts';
import type { Config } from '../../pipeline/config.ts';
import { StateLostError, watchGeneration } from '../../pipeline/generation.ts';
import { pipelineProblems, readBeats } from '../../pipeline/heartbeat.ts';
import { type Keys, keys as keysFor, streams } from '../../pipeline/keys.ts';
import type { Logger } from '../../pipeline/log.ts';
import { registry } from '../../pipeline/metrics.ts';
import { isTransientRedisError } from '../../pipeline/redis.ts';
import { type Accepted, accept, traceparentFor } from './accept.ts';
import { checkEnvelope, type Envelope, type FieldError } from './envelope.ts';
import { ingestMetrics } from './metrics.ts';

export interface IngestOptions {
  config: Config;
  redis: Redis;
  log: Logger;
  /** Extra readiness checks (other components in this process). */
  notReady?: () => Promise<string | null>;
}

const BACKLOG_REFRESH_MS = 250;

export function buildServer({ config, redis, log, notReady }: IngestOptions): FastifyInstance {
  const keys = keysFor(config.ATLAS_PREFIX);
  const app = Fastify({
    loggerInstance: log.child({ stage: 'ingest' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.ATLAS_MAX_BODY_BYTES,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
  });
  const backlogWatch = watchBacklog(redis, keys.stream(streams.ingest), config.ATLAS_HIGH_WATER);
  const generation = watchGeneration(redis, keys);
  app.addHook('onClose', async () => {
    backlogWatch.stop();
    generation.stop();
  });
  // A callback hook, not an async one: no promise and microtask per request.
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('x-request-id', req.id);
    done(null, payload);
  });
  // Only JSON is accepted at the door: anything else is a 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'string' },
    app.getDefaultJsonParser('error', 'error'),
  );
  app.setErrorHandler((err: FastifyError, req, reply) => replyError(err, req, reply));
  app.setNotFoundHandler((req, reply) =>
    reply
      .code(404)
      .send({ error: 'not_found', message: `no route ${req.method} ${req.url}`, request_id: req.id }),
  );

  const opts = {
    keys,
    dedupWindowS: config.ATLAS_DEDUP_WINDOW_S,
    claimCheckBytes: config.ATLAS_CLAIM_CHECK_BYTES,
    generation: generation.fence,
  };
  const acceptAll = async (
    req: FastifyRequest,
    reply: FastifyReply,
    envelopes: Envelope[],
  ): Promise<Accepted[] | undefined> => {
    if (backlogWatch.over()) {
      ingestMetrics.rejected.inc({ reason: 'backpressure' });
      void reply
        .code(429)
        .header('retry-after', '1')
        .send({ error: 'backpressure', message: 'the pipeline is behind; retry later', request_id: req.id });
      return undefined;
    }
    const traceparent = traceparentFor(req.headers.traceparent as string | undefined);
    const context = { traceparent, requestId: req.id };
    const results = await accept(redis, opts, envelopes, context).catch(async (err: unknown) => {
      // `atlas recover` may have just written the generation this door has not adopted yet.
      if (!(err instanceof StateLostError) || (await generation.refresh()) !== null) throw err;
      return accept(redis, opts, envelopes, context);
    });
    for (const r of results) ingestMetrics.events.inc({ outcome: r.duplicate ? 'duplicate' : 'accepted' });
    return results;
  };

  app.post('/events', async (req, reply) => {
    const checked = checkEnvelope(req.body);
    if ('errors' in checked) return badRequest(req, reply, checked.errors);
    const results = await acceptAll(req, reply, [checked.envelope]);
    if (!results) return reply;
    const r = results[0]!;
    return reply.code(r.duplicate ? 200 : 202).send({ ...r, request_id: req.id });
  });

  app.post('/events/batch', async (req, reply) => {
    const body = req.body;
    if (!Array.isArray(body))
      return badRequest(req, reply, [{ field: '(body)', message: 'expected a JSON array of envelopes' }]);
    if (body.length === 0 || body.length > config.ATLAS_MAX_BATCH_EVENTS) {
      const message = `a batch holds 1 to ${config.ATLAS_MAX_BATCH_EVENTS} envelopes, got ${body.length}`;
      return badRequest(req, reply, [{ field: '(body)', message }]);
    }
    const envelopes: Envelope[] = [];
    const errors: FieldError[] = [];
    body.forEach((item, index) => {
      const checked = checkEnvelope(item, index);
      if ('errors' in checked) errors.push(...checked.errors);
      else envelopes.push(checked.envelope);
    });
    if (errors.length > 0) return badRequest(req, reply, errors);
    const results = await acceptAll(req, reply, envelopes);
    if (!results) return reply;
    return reply.code(results.every((r) => r.duplicate) ? 200 : 202).send({ results, request_id: req.id });
  });

  app.get('/health', async (req) => ({ status: 'ok', request_id: req.id }));

  app.get('/ready', async (req, reply) => {
    const lost = generation.lost();
    const why = lost ? `state lost: ${lost}` : await readiness(redis, keys, backlogWatch, notReady);
    return reply
      .code(why ? 503 : 200)
      .send({ status: why ? 'not_ready' : 'ready', ...(why ? { reason: why } : {}), request_id: req.id });
  });

  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  return app;
}

/** The door's readiness is the pipeline's: every stage's heartbeat counts, not just this process. */
async function readiness(
  redis: Redis,
  keys: Keys,
  watch: BacklogWatch,
  notReady?: () => Promise<string | null>,
): Promise<string | null> {
  let problems: string[];
  try {
    const { stages, beats } = await readBeats(redis, keys);
    problems = pipelineProblems(stages, beats);
  } catch {
    return 'redis unreachable';
  }
  if (watch.over()) problems.unshift('backlog over the high-water mark');
  const own = await notReady?.();
  if (own) problems.unshift(own);
  return problems.length > 0 ? problems.join('; ') : null;
}

function badRequest(req: FastifyRequest, reply: FastifyReply, errors: FieldError[]): FastifyReply {
  ingestMetrics.rejected.inc({ reason: 'invalid_envelope' });
  return reply.code(400).send({
    error: 'invalid_envelope',
    message: 'the request has invalid fields',
    errors,
    request_id: req.id,
  });
}

function replyError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err instanceof StateLostError) {
    ingestMetrics.rejected.inc({ reason: 'state_lost' });
    req.log.error(
      { reason: err.message },
      'pipeline state lost in Redis: refusing events until `atlas recover`',
    );
    return reply.code(503).header('retry-after', '5').send({
      error: 'state_lost',
      message:
        'the pipeline lost its state in Redis; nothing was accepted; an operator must run `atlas recover`',
      request_id: req.id,
    });
  }
  if (isTransientRedisError(err)) {
    ingestMetrics.rejected.inc({ reason: 'redis_unavailable' });
    // A timed-out script may still have run: only a refused connection proves nothing went in.
    const message = /timed out/i.test(err.message)
      ? 'Redis did not answer in time; the events may have been accepted: retry with the same event_id (duplicates are detected)'
      : 'Redis is unreachable; nothing was accepted';
    return reply
      .code(503)
      .header('retry-after', '1')
      .send({ error: 'unavailable', message, request_id: req.id });
  }
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
  const code =
    status === 413
      ? 'body_too_large'
      : status === 415
        ? 'unsupported_media_type'
        : status === 400
          ? 'malformed_json'
          : 'error';
  ingestMetrics.rejected.inc({ reason: code });
  if (status === 500) req.log.error({ err }, 'request failed');
  const message = status === 500 ? 'internal error' : err.message;
  // Faults of the body as a whole (malformed JSON, too large) are reported like field errors.
  const errors = status === 400 || status === 413 ? { errors: [{ field: '(body)', message }] } : {};
  return reply.code(status).send({ error: code, message, ...errors, request_id: req.id });
}

interface BacklogWatch {
  over(): boolean;
  stop(): void;
}

/** The backlog is read a few times a second, not per request. */
function watchBacklog(redis: Redis, stream: string, highWater: number): BacklogWatch {
  let behind = 0;
  const refresh = () =>
    backlog(redis, stream).then(
      (n) => {
        behind = n;
      },
      () => {},
    );
  void refresh();
  const timer = setInterval(refresh, BACKLOG_REFRESH_MS);
  timer.unref();
  return { over: () => behind > highWater, stop: () => clearInterval(timer) };
}
