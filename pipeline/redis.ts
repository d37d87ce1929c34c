/**
 * Redis connections. Workers wait out an outage (commands queue, reconnects back off with
 * jitter); the HTTP door must answer 503 within a second instead, so it fails fast.
 * RESP2 everywhere: reply shapes of stream commands stay what the parsers expect.
 */
import { Redis } from 'ioredis';
import { backoffMs } from './backoff.ts';

export type { Redis };

export function connectWorker(url: string, name: string): Redis {
  return new Redis(url, {
    connectionName: name,
    protocol: 2,
    maxRetriesPerRequest: null,
    retryStrategy: (times) => backoffMs(times, 50, 2000),
  });
}

export function connectFailFast(url: string, name: string, timeoutMs = 800): Redis {
  return new Redis(url, {
    connectionName: name,
    protocol: 2,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    commandTimeout: timeoutMs,
    connectTimeout: timeoutMs,
    retryStrategy: (times) => backoffMs(times, 50, 1000),
  });
}

/** Waits for the first connection of a fail-fast client (it refuses commands until then). */
export function whenReady(redis: Redis, timeoutMs: number, failOnRefusal = false): Promise<boolean> {
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
      if (failOnRefusal && /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH/.test(err.message)) done(false);
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
