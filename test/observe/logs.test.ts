/**
 * Per-entry log lines say which event, which trace and which request they are about, and a
 * library's repeated error lines are limited to one per kind and interval, with a count.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LogLimit } from '../../pipeline/log-limit.ts';
import { stageComponent } from '../../pipeline/runtime.ts';
import { KafkaSink } from '../../stages/emit/kafka-sink.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { capturingLog } from '../support/http.ts';
import { useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import { addEntries, drained } from '../support/streams.ts';

const fx = useRedis('logs');
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

describe('a dead-lettered entry', () => {
  it('is logged with its event_id, seq, trace_id and request_id, as are its failed attempts', async () => {
    const { prefix, keys } = fx.freshPrefix('logs-dead');
    const { lines, log } = capturingLog();
    const traceId = 'a1'.repeat(16);
    await addEntries(fx.redis, keys.stream('in'), [
      {
        n: '1',
        seq: '41',
        event_id: 'evt-poison',
        request_id: 'req-7',
        traceparent: `00-${traceId}-${'b2'.repeat(8)}-01`,
      },
    ]);
    const config = testConfig(prefix, { ATLAS_MAX_DELIVERIES: 2 });
    const stage = await stageComponent(relayStage({ throwsOn: (f) => f.n === '1' }), config, log);
    await stage.start();
    stops.push(() => stage.stop());
    await eventually(() => drained(fx.redis, keys.stream('in'), 'relay'));

    const about = { event_id: 'evt-poison', seq: '41', trace_id: traceId, request_id: 'req-7' };
    const dead = lines.filter((l) => l.msg === 'dead-lettered');
    expect(dead).toEqual([expect.objectContaining({ ...about, stage: 'relay', reason: 'handler_error' })]);
    const failed = lines.filter((l) => l.msg === 'entry failed');
    expect(failed.length).toBeGreaterThan(0);
    for (const line of failed) expect(line).toMatchObject(about);
  });
});

describe('kafkajs lines while no broker answers', () => {
  it('are logged once per kind, not once per retry', async () => {
    const { lines, log } = capturingLog();
    const sink = new KafkaSink({
      connection: { brokers: ['127.0.0.1:1'] },
      topic: 'none',
      transactionalId: 'atlas-test-none',
      log,
    });
    await expect(sink.start()).rejects.toThrow();
    await sink.stop();
    const kafka = lines.filter((l) => l.msg.startsWith('kafka: ') && l.level >= 40);
    expect(kafka.length).toBeGreaterThan(0);
    const kinds = kafka.map((l) => `${l.namespace} ${l.msg.replace(/\d+/g, '#')}`);
    expect(new Set(kinds).size).toBe(kinds.length);
  });
});

describe('LogLimit', () => {
  it('lets one line per kind through per interval and counts the rest', () => {
    const limit = new LogLimit(10_000);
    expect(limit.admit('a', 0)).toBe(0);
    expect(limit.admit('a', 1_000)).toBeNull();
    expect(limit.admit('a', 2_000)).toBeNull();
    expect(limit.admit('b', 2_000)).toBe(0);
    expect(limit.admit('a', 10_000)).toBe(2);
    expect(limit.admit('a', 10_001)).toBeNull();
  });
});
