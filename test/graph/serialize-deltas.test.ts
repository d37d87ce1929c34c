/**
 * Serialize on the delta wire: two replicas share canonical's output (so each lacks the base of
 * most entries it reads and rebuilds it from canonical's store), and one of them is killed -9 and
 * started again mid-stream. Every serialized message must be byte for byte what the whole-table
 * path encodes for that emission: the graph rebuilt here from canonical's stream, put back in
 * the table order transitive sent before the deltas (`toWire`), through the snapshot encoder.
 */
import { afterEach, expect, it } from 'vitest';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { encodeCanonicalGraphUpdated } from '../../stages/serialize/encode.ts';
import { streams } from '../../stages/streams.ts';
import { fromWire, toWire } from '../../stages/topology/graph-wire.ts';
import { GraphPipeline } from '../support/graph-pipeline.ts';
import { generateScenario } from '../support/graph-scenario.ts';
import { unfinishedLink } from '../support/pipeline-processes.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('graph-serialize-deltas');
afterEach(async () => {
  await killChildren();
});

const METRICS_PORT = 17_150;

it('two serialize replicas, one killed -9 and restarted: every message byte-identical to the whole-table path', async () => {
  const scenario = generateScenario({ seed: 33, events: 240, tag: 'serialize-deltas' });
  const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-serialize-deltas').prefix, scenario.roots, {
    ATLAS_BATCH_SIZE: '8',
    ATLAS_EMIT_MODE: 'snapshot',
  });
  await Promise.all([
    p.spawn('door', ['ingest', 'validate']),
    p.spawn('transitive', ['transitive']),
    p.spawn('canonical', ['canonical']),
    p.spawn('serialize-1', ['serialize']),
    p.spawn('serialize-2', ['serialize'], { ATLAS_METRICS_PORT: String(METRICS_PORT) }),
  ]);
  const half = Math.floor(scenario.events.length / 2);
  await p.post(scenario.events.slice(0, half), { mode: 'batch', batchSize: 6 });
  await p.kill9('serialize-1');
  await p.restart('serialize-1');
  await p.post(scenario.events.slice(half), { mode: 'batch', batchSize: 6 });
  await p.waitIdle();
  await p.waitUntil(
    'serialize idle',
    () => unfinishedLink(fx.redis, p.keys, [[streams.canonical, 'serialize']]),
    60_000,
    25,
  );

  // The whole-table path's bytes of every emission, from canonical's stream.
  const expected = new Map<string, Buffer>();
  for (const [root, list] of await p.emissions())
    for (const e of list) {
      const wire = toWire(fromWire(e.graph));
      expected.set(
        `${root}#${e.sequence_number}`,
        Buffer.from(encodeCanonicalGraphUpdated(wire, e.sequence_number)),
      );
    }
  expect(expected.size).toBeGreaterThan(scenario.roots.length);
  const seen = new Set<string>();
  const serialized = await readAll(fx.redis, p.keys.stream(streams.serialized));
  expect((await resolveBlobs(fx.redis, p.keys, serialized)).size).toBe(0);
  for (const e of serialized) {
    if (e.has('skip'))
      throw new Error(`serialize skipped ${e.text('root')}#${e.text('sequence_number')}: ${e.text('skip')}`);
    const key = `${e.text('root')}#${e.text('sequence_number')}`;
    expect(expected.has(key), key).toBe(true);
    expect(e.bytes('value').equals(expected.get(key)!), `bytes of ${key}`).toBe(true);
    seen.add(key);
  }
  expect([...seen].sort()).toEqual([...expected.keys()].sort());

  // The replicas did rebuild graphs whose base they lacked (the path under test).
  const scraped = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
  const rebuilt = Number(/atlas_graph_rebuilds_total\{stage="serialize"\} (\d+)/.exec(scraped)?.[1] ?? 0);
  expect(rebuilt).toBeGreaterThan(0);
  expect(p.crashes()).toEqual([]);
  await p.stop();
}, 180_000);
