/**
 * An event family: the event types one producer domain declares, each with its payload schema per
 * version, how an old version becomes the current one, the Kafka topic (a template over the
 * payload's fields), the partition key, the default priority, the time to live and the
 * propagation. Declared once, in the family's folder; stages/families/registry.ts lists them.
 */
import type { z } from 'zod';
import type { Lane } from '../../pipeline/lanes.ts';

/** Critical events overtake everything; the others share the stages by weight (pipeline/lanes.ts). */
export type Priority = Lane;

/**
 * full: published to Kafka. local: stored in Redis for queries within the TTL, never published.
 * summary: aggregated over `window_ms` into one published event per window and key.
 */
export type Propagation = 'full' | 'local' | 'summary';

/** Route through the pipeline: topology goes through transitive and canonical, the rest is generic. */
export type Route = 'topology' | 'generic';

export interface EventTypeSpec {
  /** Payload schema per version; the highest version is the current one. */
  versions: Record<number, z.ZodType>;
  /** Turns version n into n+1 (keyed by n); every version below the current needs one. */
  upcast?: Record<number, (payload: Record<string, unknown>) => Record<string, unknown>>;
  /** Kafka topic, `{field}` replaced by the (current-version) payload's field. */
  topic: string;
  /** Payload field whose value is the Kafka message key (partition affinity and order). */
  key: string;
  priority: Priority;
  /** Time to live from the envelope's timestamp, in ms; 0 = never expires. */
  ttlMs: number;
  propagation: Propagation;
  /** Aggregation window of `summary` events. */
  windowMs?: number;
  /** Numeric payload fields a `summary` sums (besides counting). */
  sum?: string[];
}

export interface Family {
  name: string;
  route: Route;
  /** What the family is, for `atlas schemas`. */
  description: string;
  types: Record<string, EventTypeSpec>;
}

export function currentVersion(spec: EventTypeSpec): number {
  return Math.max(...Object.keys(spec.versions).map(Number));
}

/** A template field missing from the payload, or a topic that Kafka would refuse. */
export class TopicError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TopicError';
  }
}

const KAFKA_TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

/** Renders `kasmina.telemetry.layer.{layer_id}.health` over the payload's fields. */
export function renderTemplate(template: string, payload: Record<string, unknown>): string {
  const topic = template.replace(/\{(\w+)\}/g, (_, field: string) => {
    const value = payload[field];
    if (typeof value !== 'string' && typeof value !== 'number') {
      throw new TopicError(`topic ${template}: payload field ${field} is missing or not a string/number`);
    }
    return String(value);
  });
  if (!KAFKA_TOPIC.test(topic)) throw new TopicError(`topic ${topic} is not a valid Kafka topic name`);
  return topic;
}

/** The partition key: the payload's `key` field as text. */
export function keyOf(spec: EventTypeSpec, payload: Record<string, unknown>): string {
  const value = payload[spec.key];
  if (typeof value !== 'string' && typeof value !== 'number') {
    throw new TopicError(`key field ${spec.key} is missing or not a string/number`);
  }
  return String(value);
}

/** Walks version by version up to the current one. */
export function upcastToCurrent(
  spec: EventTypeSpec,
  version: number,
  payload: Record<string, unknown>,
): Record<string, unknown> {
  let out = payload;
  for (let v = version; v < currentVersion(spec); v++) {
    const step = spec.upcast?.[v];
    if (!step) throw new Error(`no upcaster from version ${v}`);
    out = step(out);
  }
  return out;
}
