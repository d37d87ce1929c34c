/**
 * The door's error catalogue: every refusal is a typed fastify error (code, status) with a
 * stable wire name in the answer's `error` field. The error handler in server.ts turns them
 * into answers; routes and hooks only throw them.
 */
import createError from '@fastify/error';
import type { FieldError } from './envelope.ts';

/** What an error adds to the answer beyond its message: field errors and headers. */
export interface Extras {
  errors?: FieldError[];
  headers?: Record<string, string>;
}

const BEARER = 'Bearer realm="atlas"';

export const UnauthorizedError = createError<'ATLAS_UNAUTHORIZED', 401, [string]>(
  'ATLAS_UNAUTHORIZED',
  '%s',
  401,
);
export const RateLimitedError = createError<'ATLAS_RATE_LIMITED', 429, [string, number]>(
  'ATLAS_RATE_LIMITED',
  'token %s is over its rate of %d requests per second; retry later',
  429,
);
export const RedisFullError = createError<'ATLAS_REDIS_MEMORY', 429, [string]>(
  'ATLAS_REDIS_MEMORY',
  'Redis is %s; retry later',
  429,
);
export const BackpressureError = createError<'ATLAS_BACKPRESSURE', 429, []>(
  'ATLAS_BACKPRESSURE',
  'the pipeline is behind; retry later',
  429,
);
export const TooDeepError = createError<'ATLAS_JSON_TOO_DEEP', 400, [number]>(
  'ATLAS_JSON_TOO_DEEP',
  'JSON nested deeper than %d levels',
  400,
);
export const InvalidEnvelopeError = createError<'ATLAS_INVALID_ENVELOPE', 400, []>(
  'ATLAS_INVALID_ENVELOPE',
  'the request has invalid fields',
  400,
);
export const InvalidProtobufError = createError<'ATLAS_INVALID_PROTOBUF', 400, [string]>(
  'ATLAS_INVALID_PROTOBUF',
  'the body is not a valid atlas.bus protobuf message: %s',
  400,
);
export const TooManySubscribersError = createError<'ATLAS_TOO_MANY_SUBSCRIBERS', 429, [string]>(
  'ATLAS_TOO_MANY_SUBSCRIBERS',
  '%s',
  429,
);

export const InvalidQueryError = createError<'ATLAS_INVALID_QUERY', 400, [string]>(
  'ATLAS_INVALID_QUERY',
  '%s',
  400,
);

/** The `error` field of an answer, by error code; fastify's own errors are named here too. */
const wireNames: Record<string, string> = {
  ATLAS_UNAUTHORIZED: 'unauthorized',
  ATLAS_RATE_LIMITED: 'rate_limited',
  ATLAS_REDIS_MEMORY: 'redis_memory',
  ATLAS_BACKPRESSURE: 'backpressure',
  ATLAS_JSON_TOO_DEEP: 'too_deep',
  ATLAS_INVALID_ENVELOPE: 'invalid_envelope',
  ATLAS_INVALID_PROTOBUF: 'invalid_protobuf',
  ATLAS_TOO_MANY_SUBSCRIBERS: 'too_many_subscribers',
  ATLAS_INVALID_QUERY: 'invalid_query',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
};

/** Errors without a code of ours (a JSON syntax error carries only a status) are named by status. */
const byStatus: Record<number, string> = {
  400: 'malformed_json',
  413: 'body_too_large',
  415: 'unsupported_media_type',
};

export function wireName(code: string | undefined, status: number): string {
  return (code && wireNames[code]) || byStatus[status] || 'error';
}

export function unauthorized(header: string | undefined): Error & Extras {
  // RFC 6750: no credentials get the bare challenge, wrong ones say invalid_token.
  const challenge = header === undefined ? BEARER : `${BEARER}, error="invalid_token"`;
  const message =
    header === undefined
      ? 'this route needs an Authorization: Bearer <token> header'
      : 'the bearer token is not valid';
  return Object.assign(new UnauthorizedError(message), { headers: { 'www-authenticate': challenge } });
}

export function retryLater<E extends Error>(err: E, seconds: number): E & Extras {
  return Object.assign(err, { headers: { 'retry-after': String(Math.max(1, Math.ceil(seconds))) } });
}

export function invalidEnvelope(errors: FieldError[]): Error & Extras {
  return Object.assign(new InvalidEnvelopeError(), { errors });
}
