/** Metrics of the publish stage (generic families), beside the runtime's per-stage ones. */
import { Counter } from 'prom-client';
import { registry } from '../../pipeline/metrics.ts';

export const publishMetrics = {
  expired: new Counter({
    name: 'atlas_events_expired_total',
    help: 'Events past their TTL when they reached the publish stage: dead-lettered as `expired`, not delivered',
    labelNames: ['event_type'],
    registers: [registry],
  }),
  published: new Counter({
    name: 'atlas_events_published_total',
    help: 'Events of the generic families published, by event type and propagation (full, summary)',
    labelNames: ['event_type', 'propagation'],
    registers: [registry],
  }),
  alreadyPublished: new Counter({
    name: 'atlas_events_already_published_total',
    help: 'Events and summary windows found already published (the sink held them after a crash or a failed Redis commit): acknowledged, not sent again',
    labelNames: ['lane'],
    registers: [registry],
  }),
  stored: new Counter({
    name: 'atlas_events_stored_local_total',
    help: 'Local events stored for queries (never published)',
    labelNames: ['event_type'],
    registers: [registry],
  }),
};
