/** The ingest door in-process (buildServer on port 0) and a small HTTP client for it. */
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Config } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { connectFailFast, whenReady } from '../../pipeline/redis.ts';
import { buildServer } from '../../stages/ingest/server.ts';
import { testLog } from './config.ts';

export interface Door {
  url: string;
  app: FastifyInstance;
  redis: Redis;
  close(): Promise<void>;
}

/** Starts the door like ingestComponent does (fail-fast Redis client), on an ephemeral port. */
export async function startDoor(
  config: Config,
  opts: { waitForRedis?: boolean; log?: Logger } = {},
): Promise<Door> {
  const redis = connectFailFast(config, 'atlas-ingest-test', opts.log ?? testLog);
  if (opts.waitForRedis !== false) await whenReady(redis, 5000);
  const app = buildServer({ config, redis, log: opts.log ?? testLog });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url,
    app,
    redis,
    close: async () => {
      await app.close();
      redis.disconnect();
    },
  };
}

/** A JSON answer as the tests read it: whatever the door sent, checked by the assertions. */
// biome-ignore lint/suspicious/noExplicitAny: answers are data under test, asserted field by field
export type Json = Record<string, any>;

export interface Answer<T = Json> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
  ms: number;
}

/** Any request; the body is parsed as JSON when it is JSON. */
export async function request<T = Json>(url: string, init: RequestInit = {}): Promise<Answer<T>> {
  const started = performance.now();
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json')) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: body as T, text, ms: performance.now() - started };
}

export function postJson<T = Json>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Answer<T>> {
  return request<T>(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** A logger that keeps every line it writes, for tests about what the door logs. */
export function capturingLog(): {
  log: Logger;
  lines: Array<{ level: number; msg: string; [field: string]: unknown }>;
} {
  const lines: Array<{ level: number; msg: string; [field: string]: unknown }> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}
