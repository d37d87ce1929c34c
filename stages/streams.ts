/** Stream names the stages derive from an event type or a topic (beside pipeline/keys.ts `streams`). */
/** Stored `local` events of one event type (queried by GET /events and `atlas events query`). */
export function localStream(eventType: string): string {
  return `local:${eventType}`;
}

/** Where the publish stage writes without KAFKA_BROKER (the Redis stream sink of a topic). */
export function outStream(topic: string): string {
  return `out:${topic}`;
}
