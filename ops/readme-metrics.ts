#!/usr/bin/env node
/**
 * Writes the metrics table of README.md (between the metrics markers) from the registry itself,
 * so the documented names never drift from the exported ones; `--check` exits 1 when the
 * README's table is not that. The dashboard and alert rules are checked against the same list
 * (test/observe/monitoring.test.ts).
 */
import { registry } from '../pipeline/metrics.ts';
import '../pipeline/pipeline-gauges.ts';
import '../stages/ingest/metrics.ts';
import '../stages/subscribe/metrics.ts';
import '../stages/publish/metrics.ts';
import { alignTable, withSection, writeOrCheck } from './readme-tables.ts';

const START = '<!-- metrics:start (node ops/readme-metrics.ts) -->';
const END = '<!-- metrics:end -->';

export interface MetricInfo {
  name: string;
  type: string;
  labels: string[];
  help: string;
}

/** Every metric a process may export (the door's and the stages' modules all loaded). */
export function metricCatalogue(): MetricInfo[] {
  return registry.getMetricsAsArray().map((m) => {
    const { name, help, labelNames } = m as unknown as { name: string; help: string; labelNames: string[] };
    return { name, type: String(m.type), labels: [...labelNames], help };
  });
}

/**
 * The series names Prometheus stores for the catalogue: a histogram is its _bucket, _sum and
 * _count series.
 */
export function seriesNames(): Set<string> {
  const names = new Set<string>();
  for (const m of metricCatalogue()) {
    names.add(m.name);
    if (m.type === 'histogram' || m.type === 'summary')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(m.name + suffix);
  }
  return names;
}

/** Atlas's own metrics; the default Node metrics are named in one line under the table. */
function metricsTable(): string {
  const rows = metricCatalogue()
    .filter((m) => m.name.startsWith('atlas_'))
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => {
      const labels = m.labels.map((l) => `\`${l}\``).join(', ') || '—';
      return `| \`${m.name}\` | ${m.type} | ${labels} | ${m.help.replaceAll('|', '\\|')} |`;
    });
  return ['| metric | type | labels | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

export function readmeWithMetrics(readme: string): string {
  return withSection(readme, START, END, alignTable(metricsTable()));
}

if (import.meta.main) writeOrCheck(readmeWithMetrics, 'metrics', 'node ops/readme-metrics.ts');
