/**
 * A sink that counts what it publishes and times each publish (atlas_sink_messages_total,
 * atlas_sink_publish_seconds), whichever sink it wraps: the metrics live in one place, not in
 * every sink.
 */
import { metrics } from '../../pipeline/metrics.ts';
import type { OutMessage, Sink } from './sink.ts';

export function metered(sink: Sink, name: 'kafka' | 'redis'): Sink {
  const confirmed = metrics.sinkMessages.labels({ sink: name });
  const ok = metrics.sinkPublishSeconds.labels({ sink: name, outcome: 'ok' });
  const failed = metrics.sinkPublishSeconds.labels({ sink: name, outcome: 'error' });
  return {
    start: () => sink.start(),
    lastSequences: (roots) => sink.lastSequences(roots),
    tails: () => sink.tails(),
    stop: () => sink.stop(),
    async publish(messages: readonly OutMessage[]) {
      const started = performance.now();
      try {
        await sink.publish(messages);
      } catch (err) {
        failed.observe((performance.now() - started) / 1000);
        throw err;
      }
      ok.observe((performance.now() - started) / 1000);
      confirmed.inc(messages.length);
    },
  };
}
