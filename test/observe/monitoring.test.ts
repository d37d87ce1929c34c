/**
 * ops/monitoring: the alert rules pass promtool's checks and unit tests (alerts.test.yml), the
 * scrape configuration loads, and every metric the dashboard and the rules query exists in the
 * registry — so a renamed metric fails here, not on an operator's screen. Also: the README's
 * metrics table and the committed dashboard are what their generators write.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_FILE, dashboard } from '../../ops/monitoring/dashboard.ts';
import { readmeWithMetrics, seriesNames } from '../../ops/readme-metrics.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const MONITORING = join(ROOT, 'ops', 'monitoring');
const run = promisify(execFile);

/** promtool through the project's wrapper (built from the Go module proxy on first use). */
async function promtool(...args: string[]): Promise<string> {
  const { stdout, stderr } = await run(join(MONITORING, 'promtool'), args, { cwd: MONITORING });
  return stdout + stderr;
}

/** The metric names a PromQL expression reads (identifiers that name series, not functions or labels). */
function metricsIn(expr: string): string[] {
  const withoutLabels = expr.replace(/\{[^}]*\}/g, '').replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  return [...withoutLabels.matchAll(/\b(atlas_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+)\b/g)].map(
    (m) => m[1]!,
  );
}

function dashboardExprs(): string[] {
  const model = dashboard() as { panels: Array<{ targets?: Array<{ expr: string }> }>; templating: unknown };
  const queries = model.panels.flatMap((p) => p.targets?.map((t) => t.expr) ?? []);
  return [...queries, JSON.stringify(model.templating)];
}

/** The rule file without its comments: expressions and annotations name no metric that does not exist. */
function rules(): string {
  return readFileSync(join(MONITORING, 'alerts.yml'), 'utf8').replace(/^\s*#.*$/gm, '');
}

describe('ops/monitoring', () => {
  beforeAll(async () => {
    await promtool('--version'); // builds it on first use: minutes on a loaded machine
  }, 900_000);

  it('alert rules pass promtool check rules', async () => {
    expect(await promtool('check', 'rules', 'alerts.yml')).toMatch(/SUCCESS: 7 rules found/);
  });

  it('alert rules pass their unit tests (promtool test rules)', async () => {
    expect(await promtool('test', 'rules', 'alerts.test.yml')).toMatch(/SUCCESS/);
  });

  it('the scrape configuration loads, with its rule file', async () => {
    expect(await promtool('check', 'config', 'prometheus.yml')).toMatch(/SUCCESS/);
  });

  it('queries only metrics that exist (dashboard and rules)', () => {
    const known = seriesNames();
    const used = [...dashboardExprs(), rules()].flatMap(metricsIn);
    expect(used.length).toBeGreaterThan(20);
    expect(used.filter((name) => !known.has(name))).toEqual([]);
  });

  it('has every alert the operator needs', () => {
    for (const alert of [
      'AtlasLagRising',
      'AtlasStageStalled',
      'AtlasDLQGrowing',
      'AtlasCircuitOpen',
      'AtlasNoLeaseHolder',
      'AtlasRedisMemoryHigh',
    ])
      expect(rules()).toContain(`alert: ${alert}\n`);
  });

  it('the committed dashboard is what ops/monitoring/dashboard.ts writes', () => {
    expect(JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')), 'run node ops/monitoring/dashboard.ts').toEqual(
      dashboard(),
    );
  });

  it("documents every metric in the README's table", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readmeWithMetrics(readme), 'run node ops/readme-metrics.ts').toBe(readme);
  });
});
