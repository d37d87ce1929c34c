/**
 * The HTTP door (fastify): POST /events, POST /events/batch, GET /health, /ready, /metrics, /openapi.json.
 * Every answer is JSON with the request id; Redis trouble is a 503 within a second.
 * Hostile input costs the attacker, not Redis: bearer tokens with rate limits, timeouts and
 * a connection cap, a nesting limit checked before parsing, and 429 near Redis maxmemory.
 */
import { randomUUID } from 'node:crypto';
import { SpanKind } from '@opentelemetry/api';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Redis } from 'ioredis';
import { RateLimiter, tokenFor } from '../../pipeline/auth.ts';
import { backlog } from '../../pipeline/backlog.ts';
import type { Config } from '../../pipeline/config.ts';
import { StateLostError, watchGeneration } from '../../pipeline/generation.ts';
import { pipelineProblems, readBeats } from '../../pipeline/heartbeat.ts';
import { type Keys, keys as keysFor } from '../../pipeline/keys.ts';
import { laneStream, lanes } from '../../pipeline/lanes.ts';
import type { Logger } from '../../pipeline/log.ts';
import { metrics, registry } from '../../pipeline/metrics.ts';
import { isTransientRedisError } from '../../pipeline/redis.ts';
import { isOutOfMemory, type MemoryWatch, watchMemory } from '../../pipeline/redis-memory.ts';
import { startWork } from '../../pipeline/tracing.ts';
import { NotLocalError, queryLocal } from '../families/local.ts';
import { EVENTS, streams } from '../streams.ts';
import { registerSubscribe } from '../subscribe/sse.ts';
import { isSubscriberGroup, Subscriptions } from '../subscribe/subscriptions.ts';
import { type Accepted, Acceptor, traceparentFor } from './accept.ts';
import type { Call, Door } from './door.ts';
import { checkEnvelope, type Envelope, type FieldError } from './envelope.ts';
import {
  BackpressureError,
  type Extras,
  InvalidQueryError,
  invalidEnvelope,
  RateLimitedError,
  RedisFullError,
  retryLater,
  TooDeepError,
  unauthorized,
  wireName,
} from './errors.ts';
import { nestsDeeperThan } from './json-depth.ts';
import { ingestMetrics } from './metrics.ts';
import { openApiDocument } from './openapi.ts';
import { registerProtobuf } from './protobuf.ts';

export interface IngestOptions {
  config: Config;
  redis: Redis;
  log: Logger;
  /** Extra readiness checks (other components in this process). */
  notReady?: () => Promise<string | null>;
}

const BACKLOG_REFRESH_MS = 250;
/** Routes anyone may call, also with authentication on (liveness says nothing about data). */
const OPEN = { config: { open: true } };

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No bearer token needed. */
    open?: boolean;
  }
}

export function buildServer({ config, redis, log, notReady }: IngestOptions): FastifyInstance {
  const keys = keysFor(config.ATLAS_PREFIX);
  const app = Fastify({
    loggerInstance: log.child({ stage: 'ingest' }) as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.ATLAS_MAX_BODY_BYTES,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    // Slow clients (headers or a body trickled byte by byte, idle sockets) are cut off, so
    // they cannot hold the door's connections and descriptors.
    connectionTimeout: config.ATLAS_HTTP_CONNECTION_TIMEOUT_MS,
    requestTimeout: config.ATLAS_HTTP_REQUEST_TIMEOUT_MS,
    http: {
      headersTimeout: config.ATLAS_HTTP_HEADERS_TIMEOUT_MS,
      requestTimeout: config.ATLAS_HTTP_REQUEST_TIMEOUT_MS,
      // node checks both timeouts only this often (30 s by default)
      connectionsCheckingInterval: Math.min(1000, config.ATLAS_HTTP_HEADERS_TIMEOUT_MS / 2),
    },
  });
  app.server.maxConnections = config.ATLAS_HTTP_MAX_CONNECTIONS;
  // The lanes too: generic events pile up there when publishing lags, past validate's pause.
  const backlogWatch = watchBacklog(
    redis,
    [streams.ingest, ...lanes.map((lane) => laneStream(EVENTS, lane))].map((s) => keys.stream(s)),
    config.ATLAS_HIGH_WATER,
  );
  const subscriptions = new Subscriptions(redis, keys, config, app.log as Logger);
  const memoryWatch = watchMemory(
    redis,
    config.ATLAS_REDIS_MEMORY_LIMIT_PERCENT,
    config.ATLAS_REDIS_MEMORY_REFRESH_MS,
    app.log as Logger,
    (m) => {
      ingestMetrics.redisMemoryUsed.set(m.used);
      ingestMetrics.redisMemoryMax.set(m.max);
    },
  );
  const generation = watchGeneration(redis, keys);
  app.addHook('onClose', async () => {
    backlogWatch.stop();
    await subscriptions.close();
    generation.stop();
    memoryWatch.stop();
  });
  // Before the body is read: a refused request costs its sender, not us.
  const guard = guardFor(config, memoryWatch);
  app.addHook('onRequest', (req, _reply, done) =>
    done(
      req.routeOptions.config.open === true
        ? undefined
        : // An acknowledgement frees Redis (entries can be trimmed): not refused for its memory.
          guard.admit(
            req.headers.authorization,
            req.method === 'POST' && req.routeOptions.url !== '/subscribe/ack',
          ),
    ),
  );
  // A callback hook, not an async one: no promise and microtask per request.
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('x-request-id', req.id);
    done(null, payload);
  });
  // The route's pattern, never the URL: a scan of made-up paths must not make new series.
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    ingestMetrics.requestSeconds.observe(
      { method: req.method, route, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    done();
  });
  // Only JSON and protobuf are accepted at the door: anything else is a 415.
  app.removeAllContentTypeParsers();
  const parseJson = app.getDefaultJsonParser('error', 'error');
  const maxDepth = config.ATLAS_MAX_JSON_DEPTH;
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = String(body); // parseAs 'string' hands over a string
    if (nestsDeeperThan(text, maxDepth)) done(new TooDeepError(maxDepth), undefined);
    else parseJson(req, text, done);
  });
  registerProtobuf(app, maxDepth);
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
  const acceptor = new Acceptor(redis, opts, config.ATLAS_MAX_BATCH_EVENTS);
  const acceptAll = async (call: Call, envelopes: Envelope[]): Promise<Accepted[]> => {
    if (backlogWatch.over()) throw retryLater(new BackpressureError(), 1);
    const header = call.traceparent;
    // The caller's trace goes on through this span; the entries carry the span's traceparent.
    const span = startWork(
      'ingest',
      SpanKind.SERVER,
      header,
      {
        'http.request.method': call.method,
        'http.route': call.route,
        'atlas.request_id': call.requestId,
        'atlas.events': envelopes.length,
        ...(envelopes.length === 1 ? { 'atlas.event_id': envelopes[0]!.event_id } : {}),
      },
      () => traceparentFor(header),
    );
    const context = { traceparent: span.traceparent, requestId: call.requestId };
    const results = await acceptor
      .accept(envelopes, context)
      .catch(async (err: unknown) => {
        // `atlas recover` may have just written the generation this door has not adopted yet.
        if (!(err instanceof StateLostError) || (await generation.refresh()) !== null) throw err;
        return acceptor.accept(envelopes, context);
      })
      .catch((err: unknown) => {
        span.fail(err);
        throw err;
      })
      .finally(() => span.end());
    for (const r of results) ingestMetrics.events.inc({ outcome: r.duplicate ? 'duplicate' : 'accepted' });
    return results;
  };
  const callOf = (req: FastifyRequest): Call => ({
    requestId: req.id,
    traceparent: req.headers.traceparent as string | undefined,
    method: req.method,
    route: req.routeOptions.url ?? req.url,
  });
  app.decorate('door', { admit: guard.admit, accept: acceptAll } satisfies Door);
  app.decorate('subscriptions', subscriptions);
  registerSubscribe(app, subscriptions, config.ATLAS_HTTP_CONNECTION_TIMEOUT_MS / 2);

  app.post('/events', async (req, reply) => {
    const checked = checkEnvelope(req.body);
    if ('errors' in checked) throw invalidEnvelope(checked.errors);
    const [r] = (await acceptAll(callOf(req), [checked.envelope])) as [Accepted];
    return reply.code(r.duplicate ? 200 : 202).send({ ...r, request_id: req.id });
  });

  app.post('/events/batch', async (req, reply) => {
    const body = req.body;
    if (!Array.isArray(body))
      throw invalidEnvelope([{ field: '(body)', message: 'expected a JSON array of envelopes' }]);
    if (body.length === 0 || body.length > config.ATLAS_MAX_BATCH_EVENTS) {
      const message = `a batch holds 1 to ${config.ATLAS_MAX_BATCH_EVENTS} envelopes, got ${body.length}`;
      throw invalidEnvelope([{ field: '(body)', message }]);
    }
    const envelopes: Envelope[] = [];
    const errors: FieldError[] = [];
    body.forEach((item, index) => {
      const checked = checkEnvelope(item, index);
      if ('errors' in checked) errors.push(...checked.errors);
      else envelopes.push(checked.envelope);
    });
    if (errors.length > 0) throw invalidEnvelope(errors);
    const results = await acceptAll(callOf(req), envelopes);
    return reply.code(results.every((r) => r.duplicate) ? 200 : 202).send({ results, request_id: req.id });
  });

  // Stored `local` events of one type, oldest first, within their TTL.
  app.get('/events', async (req) => {
    const query = req.query as Record<string, string | undefined>;
    const since = Number(query.since ?? 0);
    const limit = Number(query.limit ?? 1000);
    if (!query.type) throw new InvalidQueryError('give the event type: /events?type=<event_type>&since=<ms>');
    if (!Number.isSafeInteger(since) || since < 0) throw new InvalidQueryError('since: ms since epoch');
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000)
      throw new InvalidQueryError('limit: 1 to 10000');
    try {
      return { events: await queryLocal(redis, keys, query.type, since, limit), request_id: req.id };
    } catch (err) {
      if (err instanceof NotLocalError) throw new InvalidQueryError(err.message);
      throw err;
    }
  });

  app.get('/health', OPEN, async (req) => ({ status: 'ok', request_id: req.id }));

  const openApi = openApiDocument({ maxBatch: config.ATLAS_MAX_BATCH_EVENTS });
  app.get('/openapi.json', OPEN, async () => openApi);

  app.get('/ready', async (req, reply) => {
    const lost = generation.lost();
    const why = lost
      ? `state lost: ${lost}`
      : await readiness(redis, keys, backlogWatch, memoryWatch, notReady);
    return reply
      .code(why ? 503 : 200)
      .send({ status: why ? 'not_ready' : 'ready', ...(why ? { reason: why } : {}), request_id: req.id });
  });

  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  return app;
}

/**
 * The checks of every call before its body is read: a bearer token (when tokens are
 * configured) within its rate, and for writes, room in Redis. Returns the refusal, if any.
 */
function guardFor(config: Config, memory: MemoryWatch): Pick<Door, 'admit'> {
  const tokens = config.ATLAS_AUTH_TOKENS;
  const limiter = new RateLimiter();
  const full = `over ${config.ATLAS_REDIS_MEMORY_LIMIT_PERCENT}% of its memory limit`;
  return {
    admit: (authorization, write) => {
      if (tokens.length > 0) {
        const token = tokenFor(tokens, authorization);
        if (!token) return unauthorized(authorization);
        const wait = limiter.take(token);
        if (wait > 0) return retryLater(new RateLimitedError(token.name, token.ratePerSecond), wait);
      }
      if (write && memory.over() !== null) return retryLater(new RedisFullError(full), 1);
      return undefined;
    },
  };
}

/** The door's readiness is the pipeline's: every stage's heartbeat counts, not just this process. */
async function readiness(
  redis: Redis,
  keys: Keys,
  backlog: BacklogWatch,
  memory: MemoryWatch,
  notReady?: () => Promise<string | null>,
): Promise<string | null> {
  let problems: string[];
  try {
    const { stages, beats } = await readBeats(redis, keys);
    problems = pipelineProblems(stages, beats);
  } catch {
    return 'redis unreachable';
  }
  const percent = memory.over();
  if (percent !== null) problems.unshift(`Redis memory at ${percent}% of maxmemory`);
  if (backlog.over()) problems.unshift('backlog over the high-water mark');
  const own = await notReady?.();
  if (own) problems.unshift(own);
  return problems.length > 0 ? problems.join('; ') : null;
}

function replyError(err: FastifyError & Extras, req: FastifyRequest, reply: FastifyReply): FastifyReply {
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
  // Redis refused the write for want of memory (between two memory readings): nothing went in.
  if (isOutOfMemory(err)) return replyError(retryLater(new RedisFullError('out of memory'), 1), req, reply);
  if (isTransientRedisError(err)) {
    ingestMetrics.rejected.inc({ reason: 'redis_unavailable' });
    metrics.transientErrors.inc({ stage: 'ingest', kind: 'redis' });
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
  const code = wireName(err.code, status);
  ingestMetrics.rejected.inc({ reason: code });
  if (status === 500) req.log.error({ err }, 'request failed');
  const message = status === 500 ? 'internal error' : err.message;
  // Faults of the body as a whole (malformed JSON, too deep, too large) are reported like field errors.
  const fieldErrors: FieldError[] | undefined =
    err.errors ?? (status === 400 || status === 413 ? [{ field: '(body)', message }] : undefined);
  if (err.headers) void reply.headers(err.headers);
  return reply
    .code(status)
    .send({ error: code, message, ...(fieldErrors ? { errors: fieldErrors } : {}), request_id: req.id });
}

interface BacklogWatch {
  over(): boolean;
  stop(): void;
}

/** The backlog (the worst of `streams`) is read a few times a second, not per request. */
function watchBacklog(redis: Redis, streams: string[], highWater: number): BacklogWatch {
  let behind = 0;
  const refresh = () =>
    // Subscribers are not the pipeline: a slow one must not stop publishing (their groups expire).
    Promise.all(streams.map((s) => backlog(redis, s, (group) => !isSubscriberGroup(group)))).then(
      (each) => {
        behind = Math.max(...each);
      },
      () => {},
    );
  void refresh();
  const timer = setInterval(refresh, BACKLOG_REFRESH_MS);
  timer.unref();
  return { over: () => behind > highWater, stop: () => clearInterval(timer) };
}
