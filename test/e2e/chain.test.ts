/**
 * Stage chaining (`pipeline/chain.ts`) end to end, against the real Redis and Kafka:
 *
 * - the reference fixtures through `atlas up` with ATLAS_CHAINS=validate+transitive+canonical+serialize:
 *   the topic holds exactly the expected updates, and the streams inside the chain stay empty;
 * - the chain in a process of its own (ingest and emit in others), kill -9'd and frozen (SIGSTOP past
 *   its lease, a standby chain taking over, then thawed) again and again while events flow: every
 *   update exactly once, in order, nothing dead-lettered, nothing left in Redis.
 */

import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readBeats } from '../../pipeline/heartbeat.ts';
import { workerStageNames } from '../../stages/names.ts';
import { streams } from '../../stages/streams.ts';
import { createTopic, decodeTopic, readTopic, sequenceNumbers, waitForCount } from '../support/e2e-kafka.ts';
import { useSharedBroker } from '../support/e2e-lock.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { churnScenario, emissionCauses, expectEveryUpdateOnce } from '../support/e2e-scenario.ts';
import { delay } from '../support/eventually.ts';
import { expectationOf, loadFixtures } from '../support/graph-scenario.ts';
import { unfinishedLink } from '../support/pipeline-processes.ts';
import { prng } from '../support/prng.ts';
import { killChildren, runAtlas } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const CHAIN = 'validate+transitive+canonical+serialize';
const INSIDE = [streams.validated, streams.transitive, streams.canonical];
const FIXTURE_DIR = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures', 'topology');
const fixtures = loadFixtures(FIXTURE_DIR);
const fx = useRedis('e2e-chain');
const topicBase = useSharedBroker('chain');
let topics = 0;

afterEach(async () => {
  await killChildren();
});

async function expectStreamsInsideEmpty(p: E2EPipeline): Promise<void> {
  for (const s of INSIDE) expect(await fx.redis.xlen(p.keys.stream(s)), s).toBe(0);
}

/** Chained, the links are the chain's input (read as its first stage) and emit's. */
async function waitDrained(p: E2EPipeline): Promise<void> {
  const links: Array<[string, string]> = [
    [streams.ingest, 'validate'],
    [streams.serialized, 'emit'],
  ];
  await p.waitUntil('drained', () => unfinishedLink(fx.redis, p.keys, links), 30_000, 50);
}

/** The chain's emissions per root, in stream order: its output is the serialized stream. */
async function chainSequences(p: E2EPipeline): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>(p.roots.map((r) => [r, []]));
  for (const e of await readAll(fx.redis, p.keys.stream(streams.serialized))) {
    const root = e.optionalText('root');
    const seq = e.optionalText('sequence_number');
    if (root === undefined || seq === undefined) continue;
    out.set(root, [...(out.get(root) ?? []), Number(seq)]);
  }
  return out;
}

describe.each(fixtures.map((f) => [f.name, f] as const))('fixture %s', (_name, fixture) => {
  it('atlas up with the chain: exactly the expected updates, no stream inside the chain written', async () => {
    const topic = `${topicBase}-${++topics}`;
    await createTopic(topic, 3);
    const p = new E2EPipeline(fx.redis, {
      prefix: fx.freshPrefix('fx').prefix,
      topic,
      roots: fixture.roots,
      env: { ATLAS_CHAINS: CHAIN },
    });
    await p.up();
    await p.post(fixture.events, { mode: 'batch', batchSize: 7 });
    const total = fixture.roots.reduce((s, r) => s + fixture.expected[r]!.emissions_per_event_mode, 0);
    await waitForCount(topic, total, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${p.output()}`);
    });
    const perRoot = await decodeTopic(await readTopic(topic));
    const canonical = await chainSequences(p);
    for (const root of fixture.roots) {
      const stream = perRoot.get(root)!;
      const n = fixture.expected[root]!.emissions_per_event_mode;
      expect(sequenceNumbers(stream)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect(canonical.get(root)).toEqual(sequenceNumbers(stream));
      const last = stream.updates.at(-1)!;
      const final = fixture.expected[root]!.final;
      expect({
        root_id: last.root_id,
        tree: last.tree,
        canonical_space_ids: last.canonical_space_ids,
      }).toEqual({
        root_id: final.root_id,
        tree: final.tree,
        canonical_space_ids: final.canonical_space_ids,
      });
    }
    await waitDrained(p);
    // Dead letters of any stage in the chain: exactly what the reference calls bad.
    const { conflicts, invalid } = expectationOf(fixture.roots, fixture.events);
    const dead = (await p.deadLetters()).map((d) => d.original.event_id).sort();
    expect(dead).toEqual([...conflicts, ...invalid].sort());
    await expectStreamsInsideEmpty(p);
    // The chain stands for each of its stages: the pipeline is ready, every stage has a live instance.
    const { beats } = await readBeats(fx.redis, p.keys);
    expect(new Set(beats.map((b) => b.stage))).toEqual(new Set(workerStageNames));
    expect((await p.ready()).status).toBe(200);
    expect(p.crashes()).toEqual([]);
    await p.stop();
  }, 120_000);
});

it('the chain kill -9’d and frozen past its lease, again and again: every update exactly once, in order', async () => {
  const SEED = 20_261_130;
  const pool = churnScenario({ seed: SEED, events: 2000, roots: 2, tag: fx.prefix });
  const roots = pool.roots;
  const topic = `${topicBase}-crash`;
  await createTopic(topic, 3);
  const p = new E2EPipeline(fx.redis, { prefix: fx.prefix, topic, roots, env: { ATLAS_LEASE_MS: '1500' } });
  await p.run('door', ['ingest']);
  await p.run('emit', ['emit']);
  await p.run('chain-a', [CHAIN], { ATLAS_BATCH_SIZE: '20' });
  await p.run('chain-b', [CHAIN], { ATLAS_BATCH_SIZE: '20' });

  let posted = 0;
  let stopPosting = false;
  const posting = (async () => {
    const started = performance.now();
    while (posted < pool.events.length && (!stopPosting || posted < 300)) {
      const due = started + (posted * 1000) / 60;
      if (due > performance.now()) await delay(due - performance.now());
      await p.post([pool.events[posted]!]);
      posted++;
    }
  })();

  const rand = prng(SEED);
  for (let cycle = 0; cycle < 6; cycle++) {
    await delay(800 + Math.floor(rand() * 800));
    const victim = cycle % 2 === 0 ? 'chain-a' : 'chain-b';
    if (cycle % 3 === 2) {
      // Frozen past its lease: the other instance takes over; thawed, the old one must not write.
      const child = p.child(victim);
      child.pause();
      await delay(2500);
      child.resume();
    } else {
      await p.kill9(victim);
      await delay(Math.floor(rand() * 300));
      await p.restart(victim);
    }
  }
  stopPosting = true;
  await posting;

  const events = pool.events.slice(0, posted);
  const causes = emissionCauses(roots, events);
  const total = roots.reduce((sum, r) => sum + causes.get(r)!.length, 0);
  await waitForCount(topic, total, 120_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${p.output()}`);
  });
  const perRoot = await decodeTopic(await readTopic(topic));
  expectEveryUpdateOnce(roots, events, perRoot, await chainSequences(p));
  await waitDrained(p);
  expect(await p.deadLetters()).toEqual([]);
  await expectStreamsInsideEmpty(p);
  expect(p.crashes()).toEqual([]);
  console.log(`chain crash: ${posted} events, ${total} messages`);
}, 300_000);

it('atlas run refuses a chain that cannot be one, before anything runs (exit 2)', async () => {
  const env = { ATLAS_PREFIX: fx.freshPrefix('refuse').prefix, ATLAS_METRICS_PORT: '0' };
  const cases: Array<[string, RegExp]> = [
    ['transitive+validate', /cannot chain transitive \(writes transitive\) to validate \(reads ingest\)/],
    ['ingest+validate', /ingest is the HTTP door and cannot be chained/],
    ['validate+validate', /named twice: validate/],
  ];
  for (const [chainArg, message] of cases) {
    const r = await runAtlas(['run', chainArg], env);
    expect(r.code, chainArg).toBe(2);
    expect(r.stderr).toMatch(message);
  }
  // Conflation holds inputs across steps: canonical may be first in a chain, never later.
  const held = await runAtlas(['run', 'transitive+canonical'], { ...env, ATLAS_CONFLATE_MS: '100' });
  expect(held.code).toBe(2);
  expect(held.stderr).toMatch(/stage canonical holds inputs across steps/);
}, 120_000);
