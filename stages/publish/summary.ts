/**
 * `summary` propagation: events are counted and their declared numeric fields summed per event
 * type, key and window (of the time the door received them, so a window closes by the clock and
 * never opens again); each closed window becomes one published event. The aggregates live in
 * Redis, written in the stage's atomic step with the ack of the events they count.
 */
import type { Redis } from 'ioredis';
import type { Entry } from '../../pipeline/entry.ts';
import type { Keys } from '../../pipeline/keys.ts';
import type { Lane } from '../../pipeline/lanes.ts';
import type { Step } from '../../pipeline/stage.ts';
import { lookup } from '../families/registry.ts';
import type { EventMessage } from './sink.ts';

interface Window {
  end: number;
  start: number;
  eventType: string;
  key: string;
  topic: string;
  schema: string;
  version: string;
}

export interface ClosedWindow {
  /** This incarnation of the window (its member and the first entry it counted). */
  ident: string;
  eventType: string;
  message: EventMessage;
  /** Forgets the window, in the step that published it. */
  clear(step: Step): void;
}

/** Open windows per lane: each lane's publish stage closes its own. */
const openKey = (keys: Keys, lane: Lane) => keys.of('summary', lane, 'open');
const windowKey = (keys: Keys, member: string) => keys.of('summary', 'window', member);

export function summarise(entry: Entry, keys: Keys, lane: Lane, step: Step): void {
  const eventType = entry.text('event_type');
  const spec = lookup(eventType)?.spec;
  const windowMs = spec?.windowMs ?? 1000;
  const start = Math.floor(Number(entry.text('received_at')) / windowMs) * windowMs;
  const window: Window = {
    end: start + windowMs,
    start,
    eventType,
    key: entry.text('key'),
    topic: entry.text('topic'),
    schema: entry.text('schema'),
    version: entry.text('version'),
  };
  const member = JSON.stringify(window);
  const payload = entry.json<Record<string, unknown>>('payload');
  // The first entry counted names this incarnation of the window: a late event re-opening a
  // published (and cleared) window makes a new one, never mistaken for the one published.
  step.write('HSETNX', windowKey(keys, member), 'opened_by', entry.id);
  step.write('HINCRBY', windowKey(keys, member), 'count', '1');
  for (const field of spec?.sum ?? []) {
    const value = payload[field];
    if (typeof value === 'number' && Number.isSafeInteger(value)) {
      step.write('HINCRBY', windowKey(keys, member), `sum:${field}`, String(value));
    }
  }
  step.write('SADD', openKey(keys, lane), member);
}

export async function closedWindows(
  redis: Redis,
  keys: Keys,
  lane: Lane,
  now: number,
): Promise<ClosedWindow[]> {
  const members = await redis.smembers(openKey(keys, lane));
  const closed: ClosedWindow[] = [];
  for (const member of members) {
    const w = JSON.parse(member) as Window;
    if (w.end > now) continue;
    const counts = await redis.hgetall(windowKey(keys, member));
    const sums: Record<string, number> = {};
    for (const [field, value] of Object.entries(counts)) {
      if (field.startsWith('sum:')) sums[field.slice(4)] = Number(value);
    }
    const value = {
      event_type: w.eventType,
      key: w.key,
      window_start: w.start,
      window_end: w.end,
      count: Number(counts.count ?? 0),
      sums,
    };
    closed.push({
      ident: `${counts.opened_by ?? ''}|${member}`,
      eventType: w.eventType,
      message: {
        topic: w.topic,
        key: w.key,
        value: JSON.stringify(value),
        headers: {
          'content-type': 'application/json',
          'schema-name': `${w.schema}#summary`,
          'schema-version': w.version,
          'event-type': `${w.eventType}.summary`,
          'event-id': `summary:${w.eventType}:${w.key}:${w.start}`,
          priority: lane,
        },
      },
      clear(step) {
        // HDEL of every field removes the hash (commit.lua's DEL takes no key-only form).
        step.write('HDEL', windowKey(keys, member), ...Object.keys(counts));
        step.write('SREM', openKey(keys, lane), member);
      },
    });
  }
  return closed;
}
