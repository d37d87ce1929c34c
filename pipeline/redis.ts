/**
 * Redis connections. Workers wait out an outage (commands queue, reconnects back off with
 * jitter); the HTTP door must answer 503 within a second instead, so it fails fast.
 * RESP2 everywhere: reply shapes of stream commands stay what the parsers expect.
 * This is the one place that builds ioredis options (TLS included) and the one place that
 * listens for connection errors.
 */
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import { backoffMs } from './backoff.ts';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import { redactUrl } from './secrets.ts';

export type { Redis };

/** Where Redis is and how to trust it. */
export type RedisTarget = Pick<Config, 'REDIS_URL' | 'REDIS_TLS_CA_FILE'>;

export function connectWorker(target: RedisTarget, name: string, log: Logger): Redis {
  return connect(target, name, log, {
    maxRetriesPerRequest: null,
    retryStrategy: (times) => backoffMs(times, 50, 2000),
  });
}

export function connectFailFast(target: RedisTarget, name: string, log: Logger, timeoutMs = 800): Redis {
  return connect(target, name, log, {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    retryStrategy: (times) => backoffMs(times, 50, 1000),
  });
}

/** The logger and printable URL of each client made here, so its duplicates log alike. */
const origins = new WeakMap<Redis, { log: Logger; url: string }>();

function connect(target: RedisTarget, name: string, log: Logger, options: RedisOptions): Redis {
  const redis = new Redis(target.REDIS_URL, {
    ...options,
    ...tlsOptions(target),
    connectionName: name,
    protocol: 2,
  });
  const origin = { log, url: redactUrl(target.REDIS_URL) };
  origins.set(redis, origin);
  logErrors(redis, name, origin.url, origin.log);
  return redis;
}

/** A second connection with the same settings (TLS, credentials) and the same error logging. */
export function duplicate(redis: Redis, name: string): Redis {
  const copy = redis.duplicate({ connectionName: name });
  const origin = origins.get(redis);
  if (origin) {
    origins.set(copy, origin);
    logErrors(copy, name, origin.url, origin.log);
  }
  return copy;
}

/** rediss:// turns TLS on in ioredis; a private CA replaces the system's trust store. */
function tlsOptions(target: RedisTarget): RedisOptions {
  if (!/^rediss:/i.test(target.REDIS_URL) || !target.REDIS_TLS_CA_FILE) return {};
  return { tls: { ca: readFileSync(target.REDIS_TLS_CA_FILE) } };
}

/** One warning per connection per this many ms; the ones in between are counted. */
const ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Without an 'error' listener ioredis prints "[ioredis] Unhandled error event" with a stack to
 * stderr on every failed reconnect (dozens per outage), which breaks JSON logs. Callers still
 * see each failure on their commands; this only reports the connection's state, rate-limited,
 * and says when it is back with the count of errors not logged since the last warning.
 */
function logErrors(redis: Redis, name: string, url: string, log: Logger): void {
  let lastAt = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  let failing = false;
  redis.on('error', (err: Error) => {
    failing = true;
    const now = Date.now();
    if (now - lastAt < ERROR_LOG_INTERVAL_MS) {
      suppressed++;
      return;
    }
    log.warn({ connection: name, url, error: redactUrl(err.message), suppressed }, 'redis: connection error');
    lastAt = now;
    suppressed = 0;
  });
  redis.on('ready', () => {
    if (!failing) return;
    log.info({ connection: name, url, suppressed }, 'redis: connected again');
    failing = false;
    suppressed = 0;
  });
}

/** Errors that mean Redis will refuse this client whatever it retries: TLS trust, credentials. */
const REFUSED =
  /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|certificate|CERT_|SSL|TLS|WRONGPASS|NOAUTH|NOPERM|ERR_SSL/i;

/**
 * Waits for the first connection of a fail-fast client (it refuses commands until then).
 * With failOnRefusal, a refusal (nothing listening, an untrusted certificate, bad credentials)
 * ends the wait at once: the reason is passed to `onRefusal`.
 */
export function whenReady(
  redis: Redis,
  timeoutMs: number,
  failOnRefusal = false,
  onRefusal?: (err: Error) => void,
): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
      resolve(ok);
    };
    const onReady = () => done(true);
    const onError = (err: Error) => {
      if (failOnRefusal && REFUSED.test(`${err.message} ${(err as { code?: string }).code ?? ''}`)) {
        onRefusal?.(err);
        done(false);
      }
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on('ready', onReady);
    redis.on('error', onError);
  });
}

/** Errors that say Redis is unreachable or slow, not that the data is bad. */
export function isTransientRedisError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return (
    /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Connection is closed|Command timed out|Stream isn't writeable|MaxRetriesPerRequest|LOADING|TRYAGAIN|CLUSTERDOWN|BUSY/.test(
      err.message,
    ) || err.name === 'MaxRetriesPerRequestError'
  );
}
