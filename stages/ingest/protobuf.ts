/**
 * Protobuf at the door (`application/x-protobuf`, and gRPC): an `atlas.bus.Envelope` is turned
 * into the JSON envelope's shape and then checked by the same envelope checks, so both
 * encodings are accepted and refused alike. Upstream Hermes topology messages become the
 * topology family's events here; their ids become hex and the validate stage judges them as it
 * judges JSON ones.
 */
import type { FastifyInstance } from 'fastify';
import { atlas, type blockchain_metadata, type space } from '../../proto/gen/bus.js';
import { InvalidProtobufError, TooDeepError } from './errors.ts';
import { nestsDeeperThan } from './json-depth.ts';

export const PROTOBUF = 'application/x-protobuf';

type Long = { toString(): string };
type U64 = number | Long | null | undefined;

/** What the JSON envelope would be; checkEnvelope decides whether it is one. */
export type EnvelopeShape = Record<string, unknown>;

export function decodeEnvelope(bytes: Uint8Array, maxDepth: number): EnvelopeShape {
  return envelopeOf(
    decodeOrRefuse(() => atlas.bus.Envelope.decode(bytes)),
    maxDepth,
  );
}

export function decodeBatch(bytes: Uint8Array, maxDepth: number): EnvelopeShape[] {
  const batch = decodeOrRefuse(() => atlas.bus.EnvelopeBatch.decode(bytes));
  return batch.envelopes.map((e) => envelopeOf(e, maxDepth));
}

function decodeOrRefuse<T>(decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    throw new InvalidProtobufError(err instanceof Error ? err.message : String(err));
  }
}

/** The JSON envelope of a decoded protobuf one; throws InvalidProtobufError when it has no payload. */
export function envelopeOf(e: atlas.bus.Envelope.$Properties, maxDepth: number): EnvelopeShape {
  const fromHermes = e.hermes ? hermesEvent(e.hermes) : undefined;
  if (fromHermes && e.eventType && e.eventType !== fromHermes.eventType)
    throw new InvalidProtobufError(
      `event_type ${e.eventType} does not match the Hermes message (${fromHermes.eventType})`,
    );
  const payload = fromHermes?.payload ?? jsonPayload(e.payloadJson, maxDepth);
  return {
    event_id: e.eventId ?? '',
    event_type: fromHermes?.eventType ?? e.eventType ?? '',
    source: e.source ?? '',
    timestamp: safeNumber(e.timestamp, 'timestamp'),
    version: e.version || 1,
    payload,
  };
}

function jsonPayload(text: string | null | undefined, maxDepth: number): unknown {
  if (text === null || text === undefined)
    throw new InvalidProtobufError('the envelope has no payload (payload_json or hermes)');
  if (nestsDeeperThan(text, maxDepth)) throw new TooDeepError(maxDepth);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidProtobufError(`payload_json is not JSON (${(err as Error).message})`);
  }
}

function safeNumber(value: U64, field: string): number {
  const n = Number(u64(value));
  if (!Number.isSafeInteger(n)) throw new InvalidProtobufError(`${field} is beyond 2^53`);
  return n;
}

const u64 = (value: U64): string => (value === null || value === undefined ? '0' : value.toString());
const hex = (bytes: Uint8Array | null | undefined): string => Buffer.from(bytes ?? []).toString('hex');

/**
 * An address as the topology family's 32 bytes: an EVM address (20 bytes, what upstream
 * carries) is left-padded with zeros as in an ABI word; other lengths are left to validate.
 */
function address(bytes: Uint8Array): string {
  const raw = hex(bytes);
  return bytes.length === 20 ? raw.padStart(64, '0') : raw;
}

function hermesEvent(h: atlas.bus.HermesTopology.$Properties): { eventType: string; payload: object } {
  if (h.createSpace) return { eventType: 'space.created', payload: spaceCreated(h, h.createSpace) };
  if (h.trustExtension) {
    const eventType = h.revoke ? 'space.trust_revoked' : 'space.trust_extended';
    return { eventType, payload: trust(h, h.trustExtension) };
  }
  throw new InvalidProtobufError('hermes carries neither create_space nor trust_extension');
}

function spaceCreated(h: atlas.bus.HermesTopology.$Properties, c: space.HermesCreateSpace.$Properties) {
  let spaceType: object;
  if (c.eoaSpace) spaceType = { kind: 'personal', owner: address(c.eoaSpace.owner ?? new Uint8Array()) };
  // Upstream names the DAO's contract; its editors and members arrive later as membership events.
  else if (c.defaultDaoSpace) spaceType = { kind: 'dao', initial_editors: [], initial_members: [] };
  else throw new InvalidProtobufError('create_space carries neither eoa_space nor default_dao_space');
  return { space_id: hex(c.spaceId), topic_id: hex(h.topicId), space_type: spaceType, meta: meta(h, c.meta) };
}

function trust(h: atlas.bus.HermesTopology.$Properties, t: space.HermesSpaceTrustExtension.$Properties) {
  let extension: object;
  if (t.verified) extension = { kind: 'verified', target_space_id: hex(t.verified.targetSpaceId) };
  else if (t.related) extension = { kind: 'related', target_space_id: hex(t.related.targetSpaceId) };
  else if (t.subtopic) extension = { kind: 'subtopic', target_topic_id: hex(t.subtopic.targetTopicId) };
  else throw new InvalidProtobufError('trust_extension carries no verified, related or subtopic extension');
  return { source_space_id: hex(t.sourceSpaceId), extension, meta: meta(h, t.meta) };
}

function meta(
  h: atlas.bus.HermesTopology.$Properties,
  m: blockchain_metadata.BlockchainMetadata.$Properties | null | undefined,
) {
  if (!m) throw new InvalidProtobufError('the Hermes message has no meta');
  return {
    block_number: u64(m.blockNumber),
    block_timestamp: u64(m.createdAt),
    tx_hash: h.txHash ?? '',
    cursor: m.cursor ?? '',
    ...(m.createdBy && m.createdBy.length > 0 ? { created_by: address(m.createdBy) } : {}),
  };
}

/**
 * Protobuf bodies beside JSON: POST /events takes an Envelope, POST /events/batch an
 * EnvelopeBatch; the routes see the JSON envelope shape and check it as always.
 */
export function registerProtobuf(app: FastifyInstance, maxDepth: number): void {
  app.addContentTypeParser(PROTOBUF, { parseAs: 'buffer' }, (req, body, done) => {
    const bytes = body as Buffer;
    try {
      const batch = req.routeOptions.url === '/events/batch';
      done(null, batch ? decodeBatch(bytes, maxDepth) : decodeEnvelope(bytes, maxDepth));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}
