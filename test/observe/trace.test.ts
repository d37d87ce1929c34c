/**
 * Tracing against a real backend: Jaeger (ops/services up jaeger, built once from the Go module
 * proxy). One event posted to `atlas up` with OTEL_EXPORTER_OTLP_ENDPOINT set comes back from
 * Jaeger's query API as one trace with a span per stage, each the child of the one before —
 * from the HTTP request to the send to the sink — and the message in the sink carries the
 * trace context of its send span. A caller's traceparent is continued, and a dead letter
 * shows as an error span.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spaceCreated, spaceId } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { postJson } from '../support/http.ts';
import { PipelineProcesses } from '../support/pipeline-processes.ts';
import { killChildren, ROOT } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('trace');
/** The first build of Jaeger takes minutes on a small machine; later starts take seconds. */
const JAEGER_START_MS = 30 * 60_000;

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  tags: { key: string; value: unknown }[];
  processID: string;
}
interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

/** Starts Jaeger (idempotent) and returns where its OTLP receiver and query API listen. */
async function jaeger(): Promise<{ otlp: string; query: string }> {
  const { stdout } = await promisify(execFile)('bash', [join(ROOT, 'ops', 'services'), 'up', 'jaeger'], {
    timeout: JAEGER_START_MS,
  });
  const address = (name: string) => {
    const found = new RegExp(`${name}=(\\S+)`).exec(stdout)?.[1];
    if (!found) throw new Error(`ops/services up jaeger did not say ${name}:\n${stdout}`);
    return found;
  };
  return { otlp: address('OTEL_EXPORTER_OTLP_ENDPOINT'), query: address('ATLAS_JAEGER_QUERY_URL') };
}

async function traceOf(query: string, traceId: string): Promise<JaegerTrace | undefined> {
  const res = await fetch(`${query}/api/traces/${traceId}`);
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`Jaeger answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { data: JaegerTrace[] }).data[0];
}

const STAGES = ['ingest', 'validate', 'transitive', 'canonical', 'serialize', 'emit'];

describe('tracing to Jaeger', () => {
  let backend: { otlp: string; query: string };
  const { prefix, keys } = fx.freshPrefix('trace');
  const service = `atlas-trace-test-${process.pid}`;
  const p = new PipelineProcesses({
    ATLAS_PREFIX: prefix,
    ATLAS_ROOT_SPACE_ID: spaceId(1),
    ATLAS_BLOCK_MS: '200',
    KAFKA_BROKER: '', // the Redis stream sink
    OTEL_SERVICE_NAME: service,
  });

  beforeAll(async () => {
    backend = await jaeger();
  }, JAEGER_START_MS);
  afterAll(async () => {
    await p.stop();
    await killChildren();
  });

  it('one event: one trace, a span per stage, each the child of the one before, ending in the sink', async () => {
    await p.start('all', ['up'], {
      OTEL_EXPORTER_OTLP_ENDPOINT: backend.otlp,
      // export within a second, not the default five
      OTEL_BSP_SCHEDULE_DELAY: '500',
    });
    const answer = await postJson(`${p.doorUrl()}/events`, spaceCreated(1));
    expect(answer.status).toBe(202);

    const out = keys.stream('out:topology.canonical');
    const [message] = await eventually(async () => {
      const written = await readAll(fx.redis, out);
      return written.length > 0 ? written : false;
    });
    const [, traceId, sendSpanId] = message!.text('traceparent').split('-');

    const trace = await eventually(async () => {
      const found = await traceOf(backend.query, traceId!);
      return found && found.spans.length >= STAGES.length + 1 ? found : false;
    }, 60_000);

    const byName = new Map(trace.spans.map((s) => [s.operationName, s]));
    const chain = [...STAGES, 'publish topology.canonical'];
    expect(trace.spans.map((s) => s.operationName).sort()).toEqual([...chain].sort());
    const parentOf = (s: JaegerSpan) => s.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
    expect(parentOf(byName.get('ingest')!)).toBeUndefined(); // no traceparent header: a new trace
    for (let i = 1; i < chain.length; i++)
      expect(parentOf(byName.get(chain[i]!)!), `parent of ${chain[i]}`).toBe(
        byName.get(chain[i - 1]!)!.spanID,
      );
    expect(byName.get('publish topology.canonical')!.spanID).toBe(sendSpanId);

    const tag = (s: JaegerSpan, key: string) => s.tags.find((t) => t.key === key)?.value;
    expect(tag(byName.get('ingest')!, 'atlas.request_id')).toBe(answer.body.request_id);
    expect(tag(byName.get('validate')!, 'atlas.event_id')).toBe(answer.body.event_id);
    expect(tag(byName.get('emit')!, 'atlas.root')).toBe(spaceId(1));
    expect(Object.values(trace.processes).map((x) => x.serviceName)).toEqual([service]);
  });

  it("continues a caller's trace; a dead letter is an error span, its skip marker travels on", async () => {
    const traceId = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const invalid = spaceCreated(2);
    invalid.payload.meta = { block_number: 2 }; // no cursor: validate dead-letters it
    const answer = await postJson(`${p.doorUrl()}/events`, invalid, {
      traceparent: `00-${traceId}-${callerSpan}-01`,
    });
    expect(answer.status).toBe(202);

    const trace = await eventually(async () => {
      const found = await traceOf(backend.query, traceId);
      return found && found.spans.length >= 3 ? found : false;
    }, 60_000);
    const byName = new Map(trace.spans.map((s) => [s.operationName, s]));
    // the skip marker keeps transitive's order dense; transitive stops it (no root changes)
    expect([...byName.keys()].sort()).toEqual(['ingest', 'transitive', 'validate']);
    const parentOf = (s: JaegerSpan) => s.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
    expect(parentOf(byName.get('ingest')!)).toBe(callerSpan);
    expect(parentOf(byName.get('validate')!)).toBe(byName.get('ingest')!.spanID);
    expect(parentOf(byName.get('transitive')!)).toBe(byName.get('validate')!.spanID);
    const tags = (s: JaegerSpan) => Object.fromEntries(s.tags.map((t) => [t.key, t.value]));
    expect(tags(byName.get('validate')!)).toMatchObject({
      error: true,
      'atlas.dead_letter.reason': 'invalid_payload',
    });
    expect(tags(byName.get('transitive')!)).toMatchObject({ 'atlas.skip': 'invalid_payload' });
  });
});
