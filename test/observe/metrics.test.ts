/**
 * The operator metrics move when the pipeline does, against the real Redis (and a dead Kafka
 * port): emit's publishes and their latency, the DLQ's size by stage and reason, lag in entries
 * and seconds while a stage is stopped, the lease holder, sink faults by kind, the door's
 * request durations and Redis memory, and the standard Node metric names.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { purge } from '../../pipeline/dlq.ts';
import { registry } from '../../pipeline/metrics.ts';
import { reportPipeline } from '../../pipeline/pipeline-gauges.ts';
import { type StageFactory, TransientError } from '../../pipeline/stage.ts';
import { createEmit } from '../../stages/emit/index.ts';
import { pipelineStreams, streams } from '../../stages/streams.ts';
import { testConfig, testLog } from '../support/config.ts';
import { spaceCreated, spaceId } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { postJson, request, startDoor } from '../support/http.ts';
import { killChildren, spawnStage } from '../support/processes.ts';
import { freePort, useRedis } from '../support/redis.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('metrics');
afterEach(async () => {
  await stopStages();
  await killChildren();
});

/** A metric's value for exactly these labels (0 when the series does not exist). */
async function value(name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const wanted = Object.entries(labels);
  const found = values.find((v) => {
    const own = v.labels as Record<string, string | number>;
    return (
      wanted.every(([k, want]) => String(own[k]) === want) &&
      Object.keys(own).length === wanted.length + ('le' in own ? 1 : 0)
    );
  });
  return found?.value ?? 0;
}

/** The count of a histogram's observations for these labels. */
async function observations(name: string, labels: Record<string, string>): Promise<number> {
  const { values } = await registry.getSingleMetric(name)!.get();
  const count = values.find(
    (v) =>
      (v as { metricName?: string }).metricName === `${name}_count` &&
      Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want),
  );
  return count?.value ?? 0;
}

/** What emit reads from `serialized`: one encoded graph per root and sequence number. */
async function serialized(keys: typeof fx.keys, root: string, seq: number): Promise<void> {
  await fx.redis.xadd(
    keys.stream(streams.serialized),
    '*',
    'root',
    root,
    'sequence_number',
    String(seq),
    'value',
    randomBytes(20),
    'traceparent',
    `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
    'received_at',
    String(Date.now()),
  );
}

/** A stage on the ingest stream that dead-letters entries marked bad and passes the rest on. */
const judge: StageFactory = () => ({
  name: 'judge',
  input: streams.ingest,
  output: streams.validated,
  async handle(entries, step) {
    for (const e of entries) {
      if (e.has('bad')) step.deadLetter(e, 'invalid_payload', 'marked bad');
      else {
        step.send({ n: e.text('n') });
        step.ack(e);
      }
    }
  },
});

describe('operator metrics', () => {
  it('emit counts what it published (entries out, sink messages, publish latency) and shows its lease', async () => {
    const { prefix, keys } = fx.freshPrefix('metrics-emit');
    const config = testConfig(prefix, { ATLAS_LEASE_MS: 1000 });
    const before = {
      out: await value('atlas_entries_out_total', { stage: 'emit' }),
      sink: await value('atlas_sink_messages_total', { sink: 'redis' }),
      publishes: await observations('atlas_sink_publish_seconds', { sink: 'redis', outcome: 'ok' }),
    };
    const active = await startStage(createEmit, config);
    for (const seq of [1, 2, 3])
      for (const root of [spaceId(1), spaceId(2)]) await serialized(keys, root, seq);

    const out = keys.stream(`out:${config.KAFKA_TOPIC_CANONICAL}`);
    await eventually(async () => expect(await fx.redis.xlen(out)).toBe(6));
    await eventually(async () =>
      expect(await value('atlas_entries_out_total', { stage: 'emit' })).toBe(before.out + 6),
    );
    expect(await value('atlas_sink_messages_total', { sink: 'redis' })).toBe(before.sink + 6);
    expect(
      await observations('atlas_sink_publish_seconds', { sink: 'redis', outcome: 'ok' }),
    ).toBeGreaterThan(before.publishes);

    const holder = active.worker.consumer;
    expect(await value('atlas_lease_holder', { stage: 'emit', consumer: holder })).toBe(1);
    const standby = await startStage(createEmit, config);
    await eventually(async () =>
      expect(await value('atlas_lease_holder', { stage: 'emit', consumer: standby.worker.consumer })).toBe(0),
    );
    expect(await value('atlas_lease_holder', { stage: 'emit', consumer: holder })).toBe(1);
    // The holder goes: the standby takes over and says so; the old holder's series is gone.
    await active.stop();
    await eventually(async () =>
      expect(await value('atlas_lease_holder', { stage: 'emit', consumer: standby.worker.consumer })).toBe(1),
    );
    const series = (await registry.getSingleMetric('atlas_lease_holder')!.get()).values;
    expect(series.filter((v) => v.labels.consumer === holder)).toEqual([]);
  });

  it('counts sink faults (kind=sink) and opens the circuit while Kafka is unreachable', async () => {
    const { prefix } = fx.freshPrefix('metrics-sink');
    const before = await value('atlas_transient_errors_total', { stage: 'emit', kind: 'sink' });
    // Nothing listens on port 1: every connection to the "broker" is refused.
    const emit = await startStage(
      createEmit,
      testConfig(prefix, { KAFKA_BROKER: '127.0.0.1:1', ATLAS_LEASE_MS: 1000 }),
    );
    await eventually(
      async () =>
        expect(await value('atlas_transient_errors_total', { stage: 'emit', kind: 'sink' })).toBeGreaterThan(
          before + 2,
        ),
      30_000,
    );
    expect(await value('atlas_circuit_open', { stage: 'emit' })).toBe(1);
    expect(await value('atlas_transient_errors_total', { stage: 'emit', kind: 'redis' })).toBe(0);
    // Stopped while it still waits for the sink, the worker ends with the sink's error.
    await expect(emit.stop()).rejects.toThrow('sink unavailable');
  });

  it('counts a sink fault in the middle of a run on every retry of the step', async () => {
    const { prefix, keys } = fx.freshPrefix('metrics-flaky');
    let failures = 3;
    const flaky: StageFactory = () => ({
      name: 'flaky',
      input: streams.ingest,
      output: streams.validated,
      async handle(entries, step) {
        if (failures-- > 0) throw new TransientError('sink refused');
        for (const e of entries) {
          step.send({ n: e.text('n') });
          step.ack(e);
        }
      },
    });
    await startStage(flaky, testConfig(prefix));
    await fx.redis.xadd(keys.stream(streams.ingest), '*', 'n', '1');
    await eventually(async () => expect(await fx.redis.xlen(keys.stream(streams.validated))).toBe(1));
    expect(await value('atlas_transient_errors_total', { stage: 'flaky', kind: 'sink' })).toBe(3);
  });

  it('reports the DLQ by stage and reason, and lag in entries and seconds while a stage is stopped', async () => {
    const { prefix, keys } = fx.freshPrefix('metrics-dlq');
    const config = testConfig(prefix);
    const stopReporting = reportPipeline(fx.redis, keys, pipelineStreams, testLog);
    try {
      const input = keys.stream(streams.ingest);
      const stage = await startStage(judge, config);
      await fx.redis.xadd(input, '*', 'n', '1');
      await fx.redis.xadd(input, '*', 'n', '2', 'bad', '1');
      await eventually(async () => expect(await fx.redis.xlen(keys.stream(streams.validated))).toBe(1));
      await eventually(async () => {
        await registry.metrics(); // a scrape: the pipeline gauges are read now
        expect(await value('atlas_dlq_entries', { stage: 'judge', reason: 'invalid_payload' })).toBe(1);
        expect(await value('atlas_consumer_lag_seconds', { stage: 'judge' })).toBe(0);
      });

      // Stopped, with two entries waiting: lag in entries, and in seconds the oldest one's age.
      await stage.stop();
      await fx.redis.xadd(input, '*', 'n', '3');
      await fx.redis.xadd(input, '*', 'n', '4');
      await eventually(async () => {
        await registry.metrics();
        expect(await value('atlas_consumer_lag_entries', { stage: 'judge' })).toBe(2);
        expect(await value('atlas_consumer_lag_seconds', { stage: 'judge' })).toBeGreaterThan(1);
      }, 10_000);
      const seconds = await value('atlas_consumer_lag_seconds', { stage: 'judge' });
      await eventually(async () => {
        await registry.metrics();
        expect(await value('atlas_consumer_lag_seconds', { stage: 'judge' })).toBeGreaterThan(seconds + 0.5);
      });

      // Back: nothing waits any more.
      await startStage(judge, config);
      await eventually(async () => {
        await registry.metrics();
        expect(await value('atlas_consumer_lag_entries', { stage: 'judge' })).toBe(0);
        expect(await value('atlas_consumer_lag_seconds', { stage: 'judge' })).toBe(0);
      });

      // Deleting dead letters keeps the counts right; letters the counts never saw are recounted.
      const [dead] = await fx.redis.xrange(keys.dlq, '-', '+');
      await purge(fx.redis, keys, [dead![0]]);
      await fx.redis.xadd(keys.dlq, '*', 'stage', 'older', 'reason', 'from_before');
      await registry.metrics();
      expect(await value('atlas_dlq_entries', { stage: 'judge', reason: 'invalid_payload' })).toBe(0);
      expect(await value('atlas_dlq_entries', { stage: 'older', reason: 'from_before' })).toBe(1);
    } finally {
      stopReporting();
    }
  });

  it('a stage process serves the pipeline gauges on its operator listener, also of stages it does not run', async () => {
    const { prefix, keys } = fx.freshPrefix('metrics-process');
    const ops = await freePort();
    const stage = spawnStage('singleton', {
      ATLAS_PREFIX: prefix,
      ATLAS_METRICS_PORT: String(ops),
      ATLAS_LEASE_MS: '1000',
      TEST_INPUT: streams.ingest,
      TEST_OUTPUT: streams.validated,
    });
    const consumer = await stage.consumer();
    await stage.waitForLog('active');
    // A stage with no process at all: its group on `validated` and two entries it never reads.
    await fx.redis.xgroup('CREATE', keys.stream(streams.validated), 'nobody', '$', 'MKSTREAM');
    await fx.redis.xadd(keys.stream(streams.ingest), '*', 'n', '1');
    await fx.redis.xadd(keys.stream(streams.ingest), '*', 'n', '2');
    await eventually(async () => {
      const text = (await request(`http://127.0.0.1:${ops}/metrics`)).text;
      expect(text).toContain(`atlas_lease_holder{stage="singleton",consumer="${consumer}"} 1`);
      expect(text).toContain('atlas_consumer_lag_entries{stage="nobody"} 2');
      expect(text).toContain('atlas_consumer_lag_entries{stage="singleton"} 0');
      const age = /^atlas_consumer_lag_seconds\{stage="nobody"\} (\S+)$/m.exec(text);
      expect(Number(age?.[1])).toBeGreaterThan(1);
    }, 15_000);
  });

  it('times door requests by route and status, and reports Redis memory', async () => {
    const { prefix } = fx.freshPrefix('metrics-door');
    const door = await startDoor(testConfig(prefix));
    try {
      const labels = { method: 'POST', route: '/events', status: '202' };
      const before = await observations('atlas_http_request_duration_seconds', labels);
      expect((await postJson(`${door.url}/events`, spaceCreated(7))).status).toBe(202);
      await postJson(`${door.url}/no/such/path`, {});
      expect(await observations('atlas_http_request_duration_seconds', labels)).toBe(before + 1);
      expect(
        await observations('atlas_http_request_duration_seconds', { route: 'unmatched', status: '404' }),
      ).toBeGreaterThan(0);
      await eventually(async () =>
        expect(await value('atlas_redis_memory_used_bytes', {})).toBeGreaterThan(0),
      );
    } finally {
      await door.close();
    }
  });

  it('exports the default Node metrics under their standard names', async () => {
    const text = await registry.metrics();
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds \d/m);
    expect(text).not.toContain('atlas_process_');
  });
});
