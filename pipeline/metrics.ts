/**
 * Prometheus metrics of the pipeline; one registry per process. Names follow Prometheus
 * conventions (units in names, `_total` counters, `_seconds` histograms); labels are stages,
 * sinks, reasons and kinds — never per entry, so the hot path adds to a fixed set of series.
 * The README's metrics table is generated from this registry (node ops/readme-metrics.ts).
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();
// The standard names (process_cpu_seconds_total, nodejs_heap_size_used_bytes …): Node
// dashboards and alerts written for any Node service work on ours unchanged.
collectDefaultMetrics({ register: registry });

const labelNames = ['stage'] as const;

export const metrics = {
  entriesIn: new Counter({
    name: 'atlas_entries_in_total',
    help: 'Entries a stage read',
    labelNames,
    registers: [registry],
  }),
  entriesOut: new Counter({
    name: 'atlas_entries_out_total',
    help: 'Entries a stage wrote downstream (emit: messages the sink confirmed)',
    labelNames,
    registers: [registry],
  }),
  deadLettered: new Counter({
    name: 'atlas_dead_lettered_total',
    help: 'Entries sent to the dead-letter stream',
    labelNames: ['stage', 'reason'],
    registers: [registry],
  }),
  dlqTrimmed: new Counter({
    name: 'atlas_dlq_trimmed_total',
    help: 'Dead letters deleted by the DLQ bounds (ATLAS_DLQ_MAX_ENTRIES, ATLAS_DLQ_MAX_AGE_S)',
    registers: [registry],
  }),
  duplicates: new Counter({
    name: 'atlas_duplicates_total',
    help: 'Entries or events dropped as already processed',
    labelNames,
    registers: [registry],
  }),
  batchSeconds: new Histogram({
    name: 'atlas_batch_seconds',
    help: 'Time to handle and commit one batch',
    labelNames,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  }),
  claimCheckBytes: new Counter({
    name: 'atlas_claim_check_bytes_total',
    help: 'Bytes stored as claim-check blobs',
    labelNames,
    registers: [registry],
  }),
  stagePaused: new Gauge({
    name: 'atlas_stage_paused',
    help: 'Whether an operator paused the stage (atlas pause): 1 = it reads nothing until atlas resume',
    labelNames,
    registers: [registry],
  }),
  paused: new Gauge({
    name: 'atlas_backpressure_paused',
    help: '1 while the stage instance does not read because its output is over ATLAS_HIGH_WATER',
    labelNames,
    registers: [registry],
  }),
  circuitOpen: new Gauge({
    name: 'atlas_circuit_open',
    help: '1 while the stage sink circuit is open (its sink unreachable)',
    labelNames,
    registers: [registry],
  }),
  stalled: new Gauge({
    name: 'atlas_stalled',
    help: '1 while the stage instance has work waiting and has committed nothing for ATLAS_STALL_MS',
    labelNames,
    registers: [registry],
  }),
  stalls: new Counter({
    name: 'atlas_stalls_total',
    help: 'Times the stage instance was found stalled',
    labelNames,
    registers: [registry],
  }),
  orderGaps: new Counter({
    name: 'atlas_order_gaps_total',
    help: 'Steps not written because their inputs came with a gap in an order a stage keeps (held, read again in stream order)',
    labelNames,
    registers: [registry],
  }),
  stateLost: new Gauge({
    name: 'atlas_state_lost',
    help: '1 while the stage stopped because the pipeline state in Redis is gone (run atlas recover)',
    labelNames,
    registers: [registry],
  }),
  fenced: new Counter({
    name: 'atlas_fenced_total',
    help: 'Steps refused because another instance holds the stage lease (this one stepped down)',
    labelNames,
    registers: [registry],
  }),
  graphResends: new Counter({
    name: 'atlas_graph_resends_total',
    help: 'Whole graphs a stage asked for because a delta built on what it did not hold (its state lost or damaged)',
    labelNames,
    registers: [registry],
  }),
  graphRebuilds: new Counter({
    name: 'atlas_graph_rebuilds_total',
    help: 'Graphs a stage rebuilt from the stored table because a delta built on what it did not hold (a restart, a replica that did not see the previous one)',
    labelNames,
    registers: [registry],
  }),
  transientErrors: new Counter({
    name: 'atlas_transient_errors_total',
    help: 'Faults retried in place, by kind: redis (Redis unreachable or timed out), sink (the output refused or failed)',
    labelNames: ['stage', 'kind'],
    registers: [registry],
  }),
  leaseHolder: new Gauge({
    name: 'atlas_lease_holder',
    help: "1 while this instance (consumer) holds its singleton stage's lease, 0 while it waits as a standby",
    labelNames: ['stage', 'consumer'],
    registers: [registry],
  }),
  sinkMessages: new Counter({
    name: 'atlas_sink_messages_total',
    help: 'Messages the sink confirmed as durably written (Kafka acks=all, or the Redis sink MULTI)',
    labelNames: ['sink'],
    registers: [registry],
  }),
  sinkPublishSeconds: new Histogram({
    name: 'atlas_sink_publish_seconds',
    help: 'Time of one publish call to the sink (one batch), by outcome (ok, error)',
    labelNames: ['sink', 'outcome'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  }),
};

export const endToEndSeconds = new Histogram({
  name: 'atlas_end_to_end_seconds',
  help: 'From acceptance at the door to the output written by the last stage',
  labelNames,
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});
