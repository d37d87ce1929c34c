/**
 * What the runtime carries from an input entry to the outputs sent for it and to its skip marker,
 * so that no stage copies it by hand: when the event was received (the end-to-end latency metric,
 * measured where it leaves the pipeline) and its trace context (each stage's span is parented by
 * it). A stage that sets one of them itself keeps its own (e.g. a rebuild's fresh context).
 */
import type { Entry, Fields } from './entry.ts';
import type { Stage } from './stage.ts';

export const carriedFields = ['received_at', 'traceparent'] as const;

/** `fields`, with the carried fields of `input` it does not set itself. */
export function carried(input: Entry, fields: Fields): Fields {
  const out: Fields = { ...fields };
  for (const name of carriedFields) {
    const value = input.optionalText(name);
    if (value !== undefined && out[name] === undefined) out[name] = value;
  }
  return out;
}

/**
 * The skip marker stage `s` leaves on its output for a dead-lettered input, keeping that output's
 * order dense: the reason, the fields the stage's marker declares, and the carried ones.
 * Undefined when the stage declares none.
 */
export function skipMarker(s: Stage, input: Entry, reason: string): Fields | undefined {
  if (!s.marker || !s.output) return undefined;
  const marker: Fields = { skip: reason };
  for (const f of s.marker) {
    const v = input.optionalText(f);
    if (v !== undefined) marker[f] = v;
  }
  return carried(input, marker);
}
