/**
 * Serialize on the delta wire: a serialize instance killed -9 mid-stream and started again
 * while a second replica joins (both lack the base of what they read next, and each lacks the
 * base of the entries the other took: they rebuild it from canonical's store); and
 * canonical+serialize as a chain, killed and restarted. Every
 * serialized message must be byte for byte what the whole-table path encodes for that emission:
 * the graph rebuilt here from transitive's stream, put back in the table order transitive sent
 * before the deltas (`toWire`), through the snapshot encoder.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { encodeCanonicalGraphUpdated } from '../../stages/serialize/encode.ts';
import { streams } from '../../stages/streams.ts';
import { DeltaReceiver, type GraphDelta } from '../../stages/topology/graph-delta.ts';
import { fromWire, toWire } from '../../stages/topology/graph-wire.ts';
import { eventually } from '../support/eventually.ts';
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

async function expectedMessages(p: GraphPipeline): Promise<Map<string, Buffer>> {
  const graphs = new DeltaReceiver();
  const last = new Map<string, { hash: string; n: number }>();
  const out = new Map<string, Buffer>();
  for (const e of await p.entries(streams.transitive)) {
    const delta = JSON.parse(e.delta!) as GraphDelta;
    graphs.apply(delta);
    const before = last.get(delta.root_id);
    if (before?.hash === delta.hash) continue;
    const n = (before?.n ?? 0) + 1;
    last.set(delta.root_id, { hash: delta.hash, n });
    const wire = toWire(fromWire(graphs.wire(delta.root_id)));
    out.set(`${delta.root_id}#${n}`, Buffer.from(encodeCanonicalGraphUpdated(wire, n)));
  }
  return out;
}

/** What each layout runs besides the door and transitive: `ports` are the operator ports scraped for rebuilds. */
describe.each([
  {
    // Both serialize instances start fresh after the kill, lacking the base of the next entries.
    layout: 'two serialize replicas, one killed -9 and restarted, the other joining',
    processes: [
      { name: 'canonical', stages: ['canonical'] },
      { name: 'serialize-1', stages: ['serialize'], port: METRICS_PORT },
    ],
    killed: 'serialize-1',
    joining: [{ name: 'serialize-2', stages: ['serialize'], port: METRICS_PORT + 1 }],
    links: [[streams.canonical, 'serialize']] as Array<[string, string]>,
  },
  {
    // Restarted, canonical holds the last emitted graph and sends a delta from it; the chained
    // serialize holds nothing yet and builds on canonical's stored graph (the entry is in memory).
    layout: 'canonical+serialize chained, the chain killed -9 and restarted',
    processes: [{ name: 'chain', stages: ['canonical+serialize'], port: METRICS_PORT }],
    killed: 'chain',
    joining: [],
    links: [] as Array<[string, string]>,
  },
])('$layout', ({ processes, killed, joining, links }) => {
  it('every message byte-identical to the whole-table path', async () => {
    const scenario = generateScenario({ seed: 33, events: 240, tag: 'serialize-deltas' });
    const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-serialize-deltas').prefix, scenario.roots, {
      ATLAS_BATCH_SIZE: '8',
      ATLAS_EMIT_MODE: 'snapshot',
    });
    type Proc = { name: string; stages: string[]; port?: number };
    const spawn = (x: Proc) =>
      p.spawn(x.name, x.stages, x.port ? { ATLAS_METRICS_PORT: String(x.port) } : {});
    const idle = async () => {
      await p.waitIdle();
      await p.waitUntil('serialize idle', () => unfinishedLink(fx.redis, p.keys, links), 60_000, 25);
    };
    await Promise.all([
      p.spawn('door', ['ingest', 'validate']),
      p.spawn('transitive', ['transitive']),
      ...processes.map(spawn),
    ]);
    const half = Math.floor(scenario.events.length / 2);
    await p.post(scenario.events.slice(0, half), { mode: 'batch', batchSize: 6 });
    // Everything serialized so far: what comes next builds on bases the new instances lack.
    await idle();
    await p.kill9(killed);
    await Promise.all([p.restart(killed), ...joining.map(spawn)]);
    await p.post(scenario.events.slice(half), { mode: 'batch', batchSize: 6 });
    await idle();
    // The whole-table path's bytes of every emission: transitive's graphs in order, each emitted
    // when its hash differs from the last emitted one (canonical's rule), numbered 1, 2, 3….
    const expected = await expectedMessages(p);
    expect(expected.size).toBeGreaterThan(scenario.roots.length);
    const seen = new Set<string>();
    const serialized = await eventually(async () => {
      const all = await readAll(fx.redis, p.keys.stream(streams.serialized));
      if (all.length < expected.size) throw new Error(`${all.length} of ${expected.size} serialized`);
      return all;
    }, 60_000);
    expect((await resolveBlobs(fx.redis, p.keys, serialized)).size).toBe(0);
    for (const e of serialized) {
      if (e.has('skip'))
        throw new Error(
          `serialize skipped ${e.text('root')}#${e.text('sequence_number')}: ${e.text('skip')}`,
        );
      const key = `${e.text('root')}#${e.text('sequence_number')}`;
      expect(expected.has(key), key).toBe(true);
      expect(e.bytes('value').equals(expected.get(key)!), `bytes of ${key}`).toBe(true);
      seen.add(key);
    }
    expect([...seen].sort()).toEqual([...expected.keys()].sort());

    // The instances started after the kill did rebuild graphs whose base they lacked.
    let rebuilt = 0;
    for (const x of [...processes, ...joining] as Proc[]) {
      if (!x.port) continue;
      // A process started late may still be loading (the other did the work meanwhile).
      const scraped = await eventually(
        async () => (await fetch(`http://127.0.0.1:${x.port}/metrics`)).text(),
        60_000,
        100,
      );
      rebuilt += Number(/atlas_graph_rebuilds_total\{stage="serialize"\} (\d+)/.exec(scraped)?.[1] ?? 0);
    }
    expect(rebuilt).toBeGreaterThan(0);
    expect(p.crashes()).toEqual([]);
    await p.stop();
  }, 180_000);
});
