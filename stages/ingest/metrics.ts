/** Metrics of the HTTP door, beside the runtime's per-stage ones. */
import { Counter } from 'prom-client';
import { registry } from '../../pipeline/metrics.ts';

export const ingestMetrics = {
  events: new Counter({
    name: 'atlas_ingest_events_total',
    help: 'Events received at the door, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  }),
  rejected: new Counter({
    name: 'atlas_ingest_rejected_total',
    help: 'Requests refused at the door, by reason',
    labelNames: ['reason'],
    registers: [registry],
  }),
};
