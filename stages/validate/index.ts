/**
 * Stage `validate`: stateless (run as many replicas as you like). Each ingest entry becomes a
 * normalised event on `validated`, or a DLQ entry plus a skip marker that keeps `seq` dense.
 */
import { streams } from '../../pipeline/keys.ts';
import { Rejection, type StageFactory } from '../../pipeline/stage.ts';
import { validateEvent } from './schemas.ts';

export const createValidate: StageFactory = () => ({
  name: 'validate',
  input: streams.ingest,
  output: streams.validated,
  marker: ['seq', 'event_id', 'received_at', 'traceparent'],
  handle(entries, step) {
    for (const entry of entries) {
      let payload: unknown;
      try {
        payload = entry.json('payload');
      } catch {
        step.deadLetter(entry, 'invalid_payload', new Rejection('invalid_payload', 'payload is not JSON'));
        continue;
      }
      const result = validateEvent(entry.text('event_type'), Number(entry.text('version')), payload);
      if (!result.ok) {
        step.deadLetter(entry, result.reason, new Rejection(result.reason, result.message, result.issues));
        continue;
      }
      step.send({
        seq: entry.text('seq'),
        event_id: entry.text('event_id'),
        event_type: result.event.event_type,
        event: JSON.stringify(result.event),
        received_at: entry.text('received_at'),
        traceparent: entry.text('traceparent'),
      });
      step.ack(entry);
    }
  },
});
