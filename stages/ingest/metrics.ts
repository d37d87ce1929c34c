/** Metrics of the HTTP door, beside the runtime's per-stage ones. */
import { Counter, Gauge, Histogram } from 'prom-client';
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
  requestSeconds: new Histogram({
    name: 'atlas_http_request_duration_seconds',
    help: 'Time the door took to answer a request, by route (the route pattern; "unmatched" for none) and status code',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  }),
  callEvents: new Histogram({
    name: 'atlas_ingest_call_events',
    help: 'Events per append-idempotent.lua call at the door: the requests of one event-loop turn share a call',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [registry],
  }),
  redisMemoryUsed: new Gauge({
    name: 'atlas_redis_memory_used_bytes',
    help: "Redis used_memory (INFO memory), as the door's memory guard last read it",
    registers: [registry],
  }),
  redisMemoryMax: new Gauge({
    name: 'atlas_redis_memory_max_bytes',
    help: 'Redis maxmemory (INFO memory); 0 = no limit',
    registers: [registry],
  }),
};
