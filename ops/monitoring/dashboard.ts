#!/usr/bin/env node
/**
 * Writes the Grafana dashboard of the pipeline (grafana-dashboard.json beside this file): one
 * row per concern, each panel per stage. Generated so that panels stay uniform and every query
 * can be checked against the registry; test/observe/monitoring.test.ts also checks that the
 * committed JSON is what this writes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const DASHBOARD_FILE = join(import.meta.dirname, 'grafana-dashboard.json');
/** The stages picked in the dashboard. Pipeline gauges come alike from several processes: max, never sum. */
const STAGES = 'stage=~"$stage"';
const RATE = '$__rate_interval';
/** The dashboard's data source variable. */
const DATASOURCE = { type: 'prometheus', uid: '$datasource' };

interface Target {
  expr: string;
  legend: string;
}

interface Panel {
  title: string;
  unit: string;
  targets: Target[];
  description?: string;
}

const quantiles = (metric: string, by: string, filter = STAGES): Target[] =>
  [0.5, 0.99].map((q) => ({
    expr: `histogram_quantile(${q}, sum by (${by}, le) (rate(${metric}_bucket{${filter}}[${RATE}])))`,
    legend: `p${q * 100} {{${by.split(', ').join('}} {{')}}}`,
  }));

const rows: Array<[string, Panel[]]> = [
  [
    'Throughput',
    [
      {
        title: 'Entries in / out per second',
        unit: 'ops',
        targets: [
          {
            expr: `sum by (stage) (rate(atlas_entries_in_total{${STAGES}}[${RATE}]))`,
            legend: 'in {{stage}}',
          },
          {
            expr: `sum by (stage) (rate(atlas_entries_out_total{${STAGES}}[${RATE}]))`,
            legend: 'out {{stage}}',
          },
        ],
      },
      {
        title: 'Door: events and refusals per second',
        unit: 'ops',
        targets: [
          { expr: `sum by (outcome) (rate(atlas_ingest_events_total[${RATE}]))`, legend: '{{outcome}}' },
          {
            expr: `sum by (reason) (rate(atlas_ingest_rejected_total[${RATE}]))`,
            legend: 'refused {{reason}}',
          },
        ],
      },
      {
        title: 'Subscribers: deliveries and acks per second',
        unit: 'ops',
        targets: [
          {
            expr: `sum by (redelivered) (rate(atlas_subscriber_deliveries_total[${RATE}]))`,
            legend: 'delivered (redelivered={{redelivered}})',
          },
          { expr: `sum(rate(atlas_subscriber_acks_total[${RATE}]))`, legend: 'acknowledged' },
          { expr: 'sum(atlas_subscribers)', legend: 'subscribers' },
          { expr: `sum(increase(atlas_subscriber_groups_expired_total[${RATE}]))`, legend: 'groups expired' },
          { expr: `sum(increase(atlas_subscriber_events_lost_total[${RATE}]))`, legend: 'events lost' },
        ],
      },
      {
        title: 'Sink: messages published per second',
        unit: 'ops',
        targets: [{ expr: `sum by (sink) (rate(atlas_sink_messages_total[${RATE}]))`, legend: '{{sink}}' }],
      },
      {
        title: 'Event families: published, stored, expired per second',
        unit: 'ops',
        targets: [
          {
            expr: `sum by (propagation) (rate(atlas_events_published_total[${RATE}]))`,
            legend: 'published {{propagation}}',
          },
          { expr: `sum(rate(atlas_events_stored_local_total[${RATE}]))`, legend: 'stored local' },
          {
            expr: `sum by (event_type) (rate(atlas_events_expired_total[${RATE}]))`,
            legend: 'expired {{event_type}}',
          },
        ],
      },
    ],
  ],
  [
    'Lag',
    [
      {
        title: 'Lag (entries not yet read, and pending)',
        unit: 'short',
        targets: [
          { expr: `max by (stage) (atlas_consumer_lag_entries{${STAGES}})`, legend: 'unread {{stage}}' },
          { expr: `max by (stage) (atlas_pending_entries{${STAGES}})`, legend: 'pending {{stage}}' },
        ],
      },
      {
        title: 'Lag (age of the oldest unacknowledged entry)',
        unit: 's',
        targets: [{ expr: `max by (stage) (atlas_consumer_lag_seconds{${STAGES}})`, legend: '{{stage}}' }],
      },
    ],
  ],
  [
    'Latency',
    [
      { title: 'Batch (handle + commit)', unit: 's', targets: quantiles('atlas_batch_seconds', 'stage') },
      {
        title: 'End to end (door to output)',
        unit: 's',
        targets: quantiles('atlas_end_to_end_seconds', 'stage'),
      },
      { title: 'Sink publish', unit: 's', targets: quantiles('atlas_sink_publish_seconds', 'sink', '') },
      {
        title: 'Door requests',
        unit: 's',
        targets: quantiles('atlas_http_request_duration_seconds', 'route, status', ''),
      },
    ],
  ],
  [
    'Faults',
    [
      {
        title: 'DLQ size',
        unit: 'short',
        targets: [
          { expr: `max by (stage, reason) (atlas_dlq_entries{${STAGES}})`, legend: '{{stage}} {{reason}}' },
        ],
      },
      {
        title: 'Transient faults retried per second',
        unit: 'ops',
        targets: [
          {
            expr: `sum by (stage, kind) (rate(atlas_transient_errors_total{${STAGES}}[${RATE}]))`,
            legend: '{{stage}} {{kind}}',
          },
        ],
      },
      {
        title: 'Sink circuit open',
        unit: 'bool',
        targets: [{ expr: `max by (stage) (atlas_circuit_open{${STAGES}})`, legend: '{{stage}}' }],
      },
      {
        title: 'Stalled, paused by backpressure, state lost',
        unit: 'short',
        targets: [
          { expr: `max by (stage) (atlas_stalled{${STAGES}})`, legend: 'stalled {{stage}}' },
          { expr: `max by (stage) (atlas_backpressure_paused{${STAGES}})`, legend: 'paused {{stage}}' },
          { expr: `max by (stage) (atlas_state_lost{${STAGES}})`, legend: 'lost {{stage}}' },
        ],
      },
    ],
  ],
  [
    'Leases and Redis',
    [
      {
        title: 'Lease holders (1 = active)',
        unit: 'short',
        description: 'Each singleton instance: 1 while it holds the lease, 0 as a standby',
        targets: [{ expr: `atlas_lease_holder{${STAGES}}`, legend: '{{stage}} {{consumer}}' }],
      },
      {
        title: 'Redis memory',
        unit: 'bytes',
        targets: [
          { expr: 'max(atlas_redis_memory_used_bytes)', legend: 'used' },
          { expr: 'max(atlas_redis_memory_max_bytes)', legend: 'maxmemory' },
        ],
      },
    ],
  ],
  [
    'Processes',
    [
      {
        title: 'CPU',
        unit: 'percentunit',
        targets: [{ expr: `rate(process_cpu_seconds_total{job="atlas"}[${RATE}])`, legend: '{{instance}}' }],
      },
      {
        title: 'Heap used',
        unit: 'bytes',
        targets: [{ expr: 'nodejs_heap_size_used_bytes{job="atlas"}', legend: '{{instance}}' }],
      },
      {
        title: 'Event loop lag p99',
        unit: 's',
        targets: [{ expr: 'nodejs_eventloop_lag_p99_seconds{job="atlas"}', legend: '{{instance}}' }],
      },
    ],
  ],
];

/** Grafana's JSON model: rows of panels 8 units high, laid out left to right. */
export function dashboard(): object {
  const panels: object[] = [];
  let id = 1;
  let y = 0;
  for (const [title, row] of rows) {
    panels.push({
      id: id++,
      type: 'row',
      title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    });
    y += 1;
    const w = Math.floor(24 / row.length);
    row.forEach((p, i) => {
      panels.push({
        id: id++,
        type: 'timeseries',
        title: p.title,
        ...(p.description ? { description: p.description } : {}),
        datasource: DATASOURCE,
        gridPos: { h: 8, w, x: i * w, y },
        fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
        options: { legend: { displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] } },
        targets: p.targets.map((t, n) => ({
          refId: String.fromCharCode(65 + n),
          expr: t.expr,
          legendFormat: t.legend,
        })),
      });
    });
    y += 8;
  }
  return {
    title: 'Atlas pipeline',
    uid: 'atlas-pipeline',
    tags: ['atlas'],
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-3h', to: 'now' },
    templating: {
      list: [
        { name: 'datasource', type: 'datasource', query: 'prometheus', label: 'Prometheus' },
        {
          name: 'stage',
          type: 'query',
          label: 'Stage',
          datasource: DATASOURCE,
          query: { query: 'label_values(atlas_entries_in_total, stage)', refId: 'stages' },
          definition: 'label_values(atlas_entries_in_total, stage)',
          includeAll: true,
          multi: true,
          allValue: '.*',
          current: { text: 'All', value: '$__all' },
          refresh: 2,
        },
      ],
    },
    panels,
  };
}

if (import.meta.main) writeFileSync(DASHBOARD_FILE, `${JSON.stringify(dashboard(), null, 2)}\n`);
