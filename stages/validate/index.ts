/**
 * Stage `validate`: stateless (run as many replicas as you like). Each ingest entry is checked
 * against its family's schema (stages/families). Topology events become normalised events on
 * `validated`; events of the generic families go, upcast to their current version and with
 * their topic and key resolved, to `events` — and leave a skip marker on `validated`, so that
 * `seq` stays dense there for transitive. Bad ones: a DLQ entry plus a skip marker.
 */
import type { Entry } from '../../pipeline/entry.ts';
import { laneStream, lanes } from '../../pipeline/lanes.ts';
import { Rejection, type Stage, type StageFactory, type Step } from '../../pipeline/stage.ts';
import type { Registered } from '../families/registry.ts';
import { lookup } from '../families/registry.ts';
import { validateFamilyEvent } from '../families/validate.ts';
import { contracts, EVENTS, streams } from '../streams.ts';
import { validateEvent } from './schemas.ts';

export const createValidate: StageFactory = () => validateStage('validate', streams.ingest);

/** Validate of the critical ingest lane: the door appends critical events there, beside `ingest`. */
export const createValidateCritical: StageFactory = () =>
  validateStage('validate-critical', laneStream(streams.ingest, 'critical'));

const validateStage = (name: string, input: string): Stage => ({
  name,
  input,
  output: streams.validated,
  outputs: lanes.map((lane) => laneStream(EVENTS, lane)),
  marker: contracts.validated.marker,
  handle(entries, step) {
    for (const entry of entries) {
      let payload: unknown;
      try {
        payload = entry.json('payload');
      } catch {
        step.deadLetter(entry, 'invalid_payload', new Rejection('invalid_payload', 'payload is not JSON'));
        continue;
      }
      const eventType = entry.text('event_type');
      const version = Number(entry.text('version'));
      const registered = lookup(eventType);
      if (!registered) {
        const message = `no schema for event_type ${eventType} version ${version}: no family declares it`;
        step.deadLetter(entry, 'unknown_event_type', new Rejection('unknown_event_type', message));
      } else if (registered.family.route === 'topology') {
        validateTopology(entry, eventType, version, payload, step);
      } else {
        validateGeneric(entry, registered, version, payload, step);
      }
    }
  },
});

function validateTopology(
  entry: Entry,
  eventType: string,
  version: number,
  payload: unknown,
  step: Step,
): void {
  const result = validateEvent(eventType, version, payload);
  if (!result.ok) {
    step.deadLetter(entry, result.reason, new Rejection(result.reason, result.message, result.issues));
    return;
  }
  step.sendFor(entry, {
    seq: entry.text('seq'),
    event_id: entry.text('event_id'),
    event_type: result.event.event_type,
    event: JSON.stringify(result.event),
  });
  step.ack(entry);
}

function validateGeneric(
  entry: Entry,
  registered: Registered,
  version: number,
  payload: unknown,
  step: Step,
): void {
  const { family, eventType, spec } = registered;
  const result = validateFamilyEvent(spec, version, payload);
  if (!result.ok) {
    step.deadLetter(entry, result.reason, new Rejection(result.reason, result.message, result.issues));
    return;
  }
  const timestamp = Number(entry.text('timestamp'));
  const passOn = { seq: entry.text('seq'), event_id: entry.text('event_id') };
  step.sendFor(
    entry,
    {
      ...passOn,
      event_type: eventType,
      family: family.name,
      schema: `${family.name}/${eventType}`,
      version: String(result.event.version),
      source_version: String(version),
      source: entry.text('source'),
      timestamp: String(timestamp),
      topic: result.event.topic,
      key: result.event.key,
      priority: spec.priority,
      propagation: spec.propagation,
      expires_at: String(spec.ttlMs > 0 ? timestamp + spec.ttlMs : 0),
      payload: JSON.stringify(result.event.payload),
    },
    laneStream(EVENTS, spec.priority),
  );
  step.sendFor(entry, { ...passOn, skip: `routed:${family.name}` });
  step.ack(entry);
}
