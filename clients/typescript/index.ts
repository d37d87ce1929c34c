/** atlas-pipeline/client: a producer for the Atlas HTTP door. */
export { AtlasError, AtlasRequestError, AtlasUnavailableError, type FieldError } from './errors.ts';
export type { AtlasEvent, Envelope, EventType, Payloads } from './events.ts';
export { type Accepted, AtlasProducer, type ProducerOptions } from './producer.ts';
export type { Backoff } from './retry.ts';
