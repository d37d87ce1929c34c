/**
 * The door's OpenAPI document, served at /openapi.json. The request bodies are generated from
 * the zod schemas the door and the validate stage check them with (z.toJSONSchema), so the
 * document cannot drift from the checks; the answers are described here in zod, typed against
 * the values the routes send (`satisfies`), for the same reason.
 */
import { z } from 'zod';
import { packageVersion } from '../../pipeline/version.ts';
import { payloadSchemas } from '../validate/schemas.ts';
import type { Accepted } from './accept.ts';
import { envelopeSchema, type FieldError } from './envelope.ts';
import { PROTOBUF } from './protobuf.ts';

const acceptedSchema = z.object({
  event_id: z.string(),
  seq: z.number().int().describe('position in the pipeline order, dense and global'),
  id: z.string().describe('the Redis stream entry id'),
  duplicate: z.boolean().describe('the event_id was accepted before: seq and id are the first acceptance'),
}) satisfies z.ZodType<Accepted>;

const fieldErrorSchema = z.object({
  index: z.number().int().optional().describe('position of the envelope in a batch'),
  field: z.string().describe('dotted path of the field, or (body)'),
  message: z.string(),
}) satisfies z.ZodType<FieldError>;

const errorSchema = z.object({
  error: z.string().describe('stable name: invalid_envelope, unauthorized, rate_limited, backpressure, …'),
  message: z.string(),
  errors: z.array(fieldErrorSchema).optional(),
  request_id: z.string(),
});

const requestId = { request_id: z.string() };
const oneAnswer = acceptedSchema.extend(requestId);
const batchAnswer = z.object({ results: z.array(acceptedSchema), ...requestId });
const healthAnswer = z.object({ status: z.literal('ok'), ...requestId });
const readyAnswer = z.object({
  status: z.enum(['ready', 'not_ready']),
  reason: z.string().optional().describe('what keeps the pipeline from being ready'),
  ...requestId,
});

const schema = (s: z.ZodType, io: 'input' | 'output' = 'output') => {
  const { $schema: _, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' });
  return rest;
};
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string, description: string) => ({
  description,
  content: { 'application/json': { schema: ref(name) } },
});
const retryAfter = {
  'Retry-After': { description: 'seconds to wait before trying again', schema: { type: 'integer' } },
};

/** Refusals every write may meet; `accepted` is what the route answers when it takes the events. */
function writeAnswers(accepted: string) {
  return {
    '202': json(accepted, 'accepted: Redis has the entries'),
    '200': json(accepted, 'every event was a duplicate of an accepted one; nothing was written'),
    '400': json(
      'Error',
      'invalid envelope (field errors), malformed or too deeply nested JSON, invalid protobuf',
    ),
    '401': json('Error', 'a bearer token is required (ATLAS_AUTH_TOKENS) and was missing or wrong'),
    '413': json('Error', 'body over ATLAS_MAX_BODY_BYTES'),
    '415': json('Error', 'not application/json or application/x-protobuf'),
    '429': { ...json('Error', 'rate limit, backlog or Redis memory: retry later'), headers: retryAfter },
    '503': {
      ...json('Error', 'Redis unreachable or state lost: retry later with the same event_id'),
      headers: retryAfter,
    },
  };
}

const NAME = '^[A-Za-z0-9_.-]{1,64}$';

/** A protobuf body: the message of proto/bus.proto. */
function protobufBody(message: string) {
  return {
    schema: { type: 'string', format: 'binary', description: `atlas.bus.${message} (proto/bus.proto)` },
  };
}

export interface OpenApiOptions {
  /** The door's ATLAS_MAX_BATCH_EVENTS. */
  maxBatch: number;
}

export function openApiDocument({ maxBatch }: OpenApiOptions) {
  const payloads = Object.fromEntries(
    Object.entries(payloadSchemas).flatMap(([type, versions]) =>
      Object.entries(versions).map(([version, s]) => [`${type}.v${version}`, schema(s, 'input')]),
    ),
  );
  return {
    openapi: '3.1.0',
    info: {
      title: 'Atlas pipeline HTTP door',
      version: packageVersion(),
      description:
        'Space-topology events in; each is accepted once by event_id (a repeat is answered as a duplicate). ' +
        'The door checks the envelope; the payload is checked per event_type and version by the validate ' +
        'stage (components.schemas.payloads), invalid ones go to the dead-letter stream.',
    },
    paths: {
      '/events': {
        post: {
          summary: 'accept one event',
          requestBody: {
            required: true,
            content: {
              'application/json': { schema: ref('Envelope') },
              [PROTOBUF]: protobufBody('Envelope'),
            },
          },
          responses: writeAnswers('Accepted'),
        },
      },
      '/events/batch': {
        post: {
          summary: 'accept events in order; all of the batch or (with field errors by index) none of it',
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: { type: 'array', items: ref('Envelope'), minItems: 1, maxItems: maxBatch },
              },
              [PROTOBUF]: protobufBody('EnvelopeBatch'),
            },
          },
          responses: writeAnswers('BatchAccepted'),
        },
      },
      '/health': {
        get: {
          summary: 'liveness of the door',
          security: [],
          responses: { '200': json('Health', 'the process answers') },
        },
      },
      '/ready': {
        get: {
          summary: "readiness of the whole pipeline (every stage's heartbeat, Redis memory, backlog)",
          responses: {
            '200': json('Ready', 'ready'),
            '401': json('Error', 'a bearer token is required'),
            '503': json('Ready', 'not ready, with the reason'),
          },
        },
      },
      '/subscribe': {
        get: {
          summary:
            'Server-Sent Events: the events of consumer group `group` for member `consumer`, at least once until acknowledged',
          parameters: [
            { name: 'group', in: 'query', required: true, schema: { type: 'string', pattern: NAME } },
            { name: 'consumer', in: 'query', schema: { type: 'string', pattern: NAME } },
            {
              name: 'type',
              in: 'query',
              description: 'event types, comma-separated',
              schema: { type: 'string' },
            },
            {
              name: 'topic',
              in: 'query',
              description: '`*` one dot-separated segment, `**` the rest',
              schema: { type: 'string' },
            },
            {
              name: 'Last-Event-ID',
              in: 'header',
              description: "acknowledges the member's events up to this id",
              schema: { type: 'string' },
            },
          ],
          responses: {
            '200': { description: 'the event stream', content: { 'text/event-stream': {} } },
            '400': json('Error', 'a bad group, consumer or Last-Event-ID'),
            '401': json('Error', 'a bearer token is required'),
            '429': json('Error', 'the door serves ATLAS_SUBSCRIBE_MAX subscribers already'),
          },
        },
      },
      '/subscribe/ack': {
        post: {
          summary: 'acknowledge delivered events of a group',
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['group', 'ids'],
                  properties: {
                    group: { type: 'string' },
                    ids: { type: 'array', items: { type: 'string' } },
                  },
                },
              },
            },
          },
          responses: {
            '200': {
              description: 'how many were pending',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    properties: { acknowledged: { type: 'integer' }, request_id: { type: 'string' } },
                  },
                },
              },
            },
            '400': json('Error', 'not {group, ids}'),
            '401': json('Error', 'a bearer token is required'),
          },
        },
      },
      '/openapi.json': {
        get: {
          summary: 'this document',
          security: [],
          responses: { '200': { description: 'the OpenAPI document', content: { 'application/json': {} } } },
        },
      },
    },
    components: {
      schemas: {
        Envelope: schema(envelopeSchema, 'input'),
        Accepted: schema(oneAnswer),
        BatchAccepted: schema(batchAnswer),
        Error: schema(errorSchema),
        Health: schema(healthAnswer),
        Ready: schema(readyAnswer),
        payloads: {
          description: 'payload schemas by event_type.v<version>',
          type: 'object',
          properties: payloads,
        },
      },
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'needed when the door has ATLAS_AUTH_TOKENS' },
      },
    },
    // Optional: a door without ATLAS_AUTH_TOKENS takes requests without a token.
    security: [{}, { bearer: [] }],
  };
}
