/**
 * Stage `publish`: the end of the generic families' route (ingest → validate → publish). Singleton
 * (lease + a fenced transactional producer), so each key's events leave in stream order. Per
 * event, by its propagation:
 * - past its TTL: not delivered; counted and dead-lettered as `expired`;
 * - `full`: sent to its topic, key and headers (schema, version, event type, event id);
 * - `local`: stored on `local:<event_type>` for queries within the TTL, never published;
 * - `summary`: counted and summed into its window; a tick publishes one event per closed window.
 * Sink faults are transient (retried behind a circuit breaker, never dead-lettered).
 *
 * Exactly once: each Kafka transaction carries the lane's progress record — the entries and
 * summary windows published whose acknowledgement in Redis is not known committed yet (see
 * sink.ts). An entry listed is acknowledged without being sent again; a window listed is cleared
 * without being sent again.
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
import { type EventMessage, NO_PROGRESS, openEventSink, type Progress } from './sink.ts';
import { closedWindows, summarise } from './summary.ts';

/** The publish stage of one lane (pipeline/lanes.ts makes one per lane, reading `events:<lane>`). */
export function createPublish(ctx: StageContext, lane: Lane): Stage {
  const { config, redis, keys, log, lease } = ctx;
  const stillActive = async () => {
    const held = lease();
    return held !== undefined && (await redis.get(held.key)) === held.token;
  };
  const sink = openEventSink(config, lane, stillActive, log);
  const breaker = new CircuitBreaker('publish');
  /**
   * What the sink holds as published and Redis may not have acknowledged yet: the entries and
   * windows of the steps since the last one known committed. Known after each send; read from the
   * sink again on activation and after a failed send (it may have committed all the same).
   */
  let done: Progress = NO_PROGRESS;
  let known = false;
  /** The current step sent something: once its commit lands, that is acknowledged too. */
  let sentInStep = false;
  /** A step failed since the last one began (reset): its commit may not have landed. */
  let stepFailed = false;
  let generation = '';

  /** Sink faults are transient: retried behind the circuit breaker, never dead-lettered. */
  async function atSink<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (!breaker.allows()) throw new TransientError('sink circuit open');
    try {
      const result = await fn();
      breaker.success();
      return result;
    } catch (err) {
      if (err instanceof FencedError) throw err;
      breaker.failure();
      const why = err instanceof Error ? err.message : String(err);
      throw new TransientError(`${what} failed: ${why}`, { cause: err });
    }
  }

  async function published(): Promise<Progress> {
    if (known) return done;
    const held = (await atSink('reading what the sink holds', () => sink.progress())) ?? NO_PROGRESS;
    if (held !== NO_PROGRESS && held.generation !== generation)
      log.warn(
        { lane, recorded: held.generation, generation },
        'publish: the progress record is of another pipeline generation; its entry ids say nothing here',
      );
    done = held.generation === generation ? held : { ...NO_PROGRESS, generation };
    known = true;
    sentInStep = false;
    if (done.ids.length > 0 || done.windows.length > 0)
      log.info({ lane, ids: done.ids.length, windows: done.windows.length }, 'publish: sink progress read');
    return done;
  }

  /**
   * A new step begins. Unless a step failed since the last one began, that one's commit landed
   * (the runtime resets the stage after every failure): what it published is acknowledged.
   */
  function settle(): void {
    if (known && sentInStep && !stepFailed) done = { generation, ids: [], windows: [] };
    sentInStep = false;
    stepFailed = false;
  }

  async function send(messages: EventMessage[], progress: Progress, step: Step): Promise<void> {
    if (messages.length === 0) return;
    known = false; // until the send is confirmed, what the sink holds is unknown
    await atSink('publishing events', () => sink.publish(messages, progress, step));
    done = progress;
    known = true;
    sentInStep = true;
  }

  return {
    name: 'publish',
    input: EVENTS,
    singleton: true,
    async activate(activation) {
      generation = activation.generation.id;
      known = false;
      await atSink('starting the event sink', () => sink.start());
      await published();
      return undefined;
    },
    async reset() {
      stepFailed = true;
    },
    async handle(entries, step) {
      settle();
      // Published before a crash or a failed commit: acknowledged, not sent again.
      const already = new Set((await published()).ids);
      const now = Date.now();
      const out: EventMessage[] = [];
      const sent: Entry[] = [];
      for (const entry of entries) {
        const expiresAt = Number(entry.text('expires_at'));
        const eventType = entry.text('event_type');
        const propagation = entry.text('propagation');
        if (propagation === 'full' && already.has(entry.id)) publishMetrics.alreadyPublished.inc({ lane });
        else {
          if (expiresAt > 0 && now > expiresAt) {
            publishMetrics.expired.inc({ event_type: eventType });
            const message = `expired ${now - expiresAt} ms before delivery (expires_at ${expiresAt})`;
            step.deadLetter(entry, 'expired', new Rejection('expired', message));
            continue;
          }
          if (propagation === 'local') {
            step.send(localFields(entry), localStream(eventType));
            publishMetrics.stored.inc({ event_type: eventType });
          } else if (propagation === 'summary') {
            summarise(entry, keys, lane, step);
          } else {
            out.push(messageOf(entry));
            sent.push(entry);
          }
        }
        step.ack(entry);
      }
      const ids = [...done.ids, ...sent.map((e) => e.id)];
      await send(out, { generation, ids, windows: done.windows }, step);
      for (const e of sent)
        publishMetrics.published.inc({ event_type: e.text('event_type'), propagation: 'full' });
    },
    tick: {
      everyMs: 250,
      async run(step) {
        settle();
        await trimLocal(redis, keys);
        const closed = await closedWindows(redis, keys, lane, Date.now());
        if (closed.length === 0) return;
        const { windows } = await published();
        // Published windows still in Redis: their clearing was not committed. The others were.
        const pending = new Set(closed.filter((c) => windows.includes(c.ident)).map((c) => c.ident));
        const fresh = closed.filter((c) => !pending.has(c.ident));
        if (pending.size > 0) publishMetrics.alreadyPublished.inc({ lane }, pending.size);
        await send(
          fresh.map((c) => c.message),
          { generation, ids: done.ids, windows: [...pending, ...fresh.map((c) => c.ident)] },
          step,
        );
        for (const c of closed) c.clear(step);
        for (const c of fresh)
          publishMetrics.published.inc({ event_type: c.eventType, propagation: 'summary' });
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
