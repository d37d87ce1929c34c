/**
 * Stage `publish`: the end of the generic families' route (ingest → validate → publish). Singleton
 * (lease + a fenced transactional producer), so each key's events leave in stream order. Per
 * event, by its propagation:
 * - past its TTL: not delivered; counted and dead-lettered as `expired`;
 * - `full`: sent to its topic, key and headers (schema, version, event type, event id);
 * - `local`: stored on `local:<event_type>` for queries within the TTL, never published;
 * - `summary`: counted and summed into its window; a tick publishes one event per closed window.
 * Sink faults are transient (retried behind a circuit breaker, never dead-lettered).
 */
import { CircuitBreaker } from '../../pipeline/circuit-breaker.ts';
import type { Entry } from '../../pipeline/entry.ts';
import type { Lane } from '../../pipeline/lanes.ts';
import {
  FencedError,
  Rejection,
  type Stage,
  type StageContext,
  type Step,
  TransientError,
} from '../../pipeline/stage.ts';
import { trimLocal } from '../families/local.ts';
import { EVENTS, localStream } from '../streams.ts';
import { publishMetrics } from './metrics.ts';
import { type EventMessage, openEventSink } from './sink.ts';
import { closedWindows, summarise } from './summary.ts';

/** The publish stage of one lane (pipeline/lanes.ts makes one per lane, reading `events:<lane>`). */
export function createPublish(ctx: StageContext, lane: Lane): Stage {
  const { config, redis, keys, log, lease } = ctx;
  const stillActive = async () => {
    const held = lease();
    return held !== undefined && (await redis.get(held.key)) === held.token;
  };
  const sink = openEventSink(config, `publish-${lane}`, stillActive, log);
  const breaker = new CircuitBreaker('publish');

  async function send(messages: EventMessage[], step: Step): Promise<void> {
    if (messages.length === 0) return;
    if (!breaker.allows()) throw new TransientError('sink circuit open');
    try {
      await sink.publish(messages, step);
      breaker.success();
    } catch (err) {
      if (err instanceof FencedError) throw err;
      breaker.failure();
      const why = err instanceof Error ? err.message : String(err);
      throw new TransientError(`publishing events failed: ${why}`, { cause: err });
    }
  }

  return {
    name: 'publish',
    input: EVENTS,
    singleton: true,
    async activate() {
      try {
        await sink.start();
      } catch (err) {
        if (err instanceof FencedError) throw err;
        breaker.failure();
        throw new TransientError('event sink unavailable at start', { cause: err });
      }
      breaker.success();
      return undefined;
    },
    async handle(entries, step) {
      const now = Date.now();
      const out: EventMessage[] = [];
      const published: Entry[] = [];
      for (const entry of entries) {
        const expiresAt = Number(entry.text('expires_at'));
        const eventType = entry.text('event_type');
        if (expiresAt > 0 && now > expiresAt) {
          publishMetrics.expired.inc({ event_type: eventType });
          const message = `expired ${now - expiresAt} ms before delivery (expires_at ${expiresAt})`;
          step.deadLetter(entry, 'expired', new Rejection('expired', message));
          continue;
        }
        const propagation = entry.text('propagation');
        if (propagation === 'local') {
          step.send(localFields(entry), localStream(eventType));
          publishMetrics.stored.inc({ event_type: eventType });
        } else if (propagation === 'summary') {
          summarise(entry, keys, lane, step);
        } else {
          out.push(messageOf(entry));
          published.push(entry);
        }
        step.ack(entry);
      }
      await send(out, step);
      for (const e of published)
        publishMetrics.published.inc({ event_type: e.text('event_type'), propagation: 'full' });
    },
    tick: {
      everyMs: 250,
      async run(step) {
        await trimLocal(redis, keys);
        const closed = await closedWindows(redis, keys, lane, Date.now());
        if (closed.length === 0) return;
        await send(
          closed.map((c) => c.message),
          step,
        );
        for (const c of closed) {
          c.clear(step);
          publishMetrics.published.inc({ event_type: c.eventType, propagation: 'summary' });
        }
      },
    },
    notReady: () => (breaker.open ? 'event sink unreachable (circuit open)' : null),
    stop: () => sink.stop(),
  };
}

/** Kafka headers of every published event: enough for a consumer to pick the decoder. */
export function headersOf(entry: Entry): Record<string, string> {
  return {
    'content-type': 'application/json',
    'schema-name': entry.text('schema'),
    'schema-version': entry.text('version'),
    'event-type': entry.text('event_type'),
    'event-id': entry.text('event_id'),
    priority: entry.text('priority'),
    traceparent: entry.text('traceparent'),
  };
}

function messageOf(entry: Entry): EventMessage {
  return {
    topic: entry.text('topic'),
    key: entry.text('key'),
    value: entry.text('payload'),
    headers: headersOf(entry),
  };
}

function localFields(entry: Entry): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const name of [
    'event_id',
    'event_type',
    'version',
    'source',
    'timestamp',
    'key',
    'expires_at',
    'payload',
  ]) {
    fields[name] = entry.text(name);
  }
  return fields;
}
