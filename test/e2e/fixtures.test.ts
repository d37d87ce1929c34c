/**
 * The reference cases (shared/fixtures/topology/*.json) through all six stages to the real Kafka
 * broker, read back from the topic with kafkajs and decoded with the contract files
 * (proto/topology.proto via protobufjs) and with stages/serialize/decode.ts:
 *
 * - `atlas up` (one process), one POST /events per event, each with its own traceparent;
 * - the stages split over seven processes with two serialize replicas, one POST /events/batch;
 *   a third serialize consumer takes the first emission and dies with it (never acks), so the
 *   replicas write the serialized stream out of order (2..N, then 1 once they take it over) and
 *   the emit stage must re-sequence.
 *
 * Both runs: the last message per root equals expected[root].final, sequence numbers are exactly
 * 1..N (N = emissions_per_event_mode) in topic order, key = the root's 16 raw bytes, headers
 * (content-type, message-name, schema-version, sequence-number, traceparent) right, meta and
 * traceparent those of the event behind each message; and the two runs publish the same updates.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { carriedFields } from '../../pipeline/carried.ts';
import { contracts, type StreamContract, streams } from '../../stages/streams.ts';
import {
  type DecodedUpdate,
  decodeTopic,
  deleteTopics,
  kafkaInit,
  type RootStream,
  readTopic,
  sequenceNumbers,
  uniqueTopic,
  waitForCount,
} from '../support/e2e-kafka.ts';
import { type HeldLock, lockBroker } from '../support/e2e-lock.ts';
import { E2EPipeline, traceparentFor } from '../support/e2e-pipeline.ts';
import { emissionCauses, expectedMeta } from '../support/e2e-scenario.ts';
import { eventually } from '../support/eventually.ts';
import { expectationOf, loadFixtures, type TopologyFixture } from '../support/graph-scenario.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const FIXTURE_DIR = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures', 'topology');
const fixtures = loadFixtures(FIXTURE_DIR);
const fx = useRedis('e2e-fx');
const topics: string[] = [];
let lock: HeldLock | undefined;

beforeAll(async () => {
  lock = await lockBroker('shared');
}, 620_000);

afterEach(async () => {
  await killChildren();
});

afterAll(async () => {
  await killChildren();
  await deleteTopics(topics).catch(() => undefined);
  await lock?.release();
}, 60_000);

function newPipeline(fixture: TopologyFixture, tag: string): E2EPipeline {
  const topic = uniqueTopic(tag);
  topics.push(topic);
  return new E2EPipeline(fx.redis, { prefix: fx.freshPrefix(tag).prefix, topic, roots: fixture.roots });
}

/** Total messages the fixture's events make in per-event mode. */
const totalOf = (f: TopologyFixture): number =>
  f.roots.reduce((sum, r) => sum + f.expected[r]!.emissions_per_event_mode, 0);

/**
 * Reads the whole topic and checks it against the fixture: per root the sequence numbers are
 * 1..N in topic order, the last update is the expected final graph, and message k carries the
 * meta of the event behind it and `traceparentOf(event index)`.
 */
async function expectTopic(
  p: E2EPipeline,
  fixture: TopologyFixture,
  traceparentOf: (eventIndex: number) => string,
): Promise<Map<string, RootStream>> {
  await waitForCount(p.topic, totalOf(fixture), 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${p.output()}`);
  });
  const perRoot = await decodeTopic(await readTopic(p.topic));
  const canonical = await p.canonicalSequences();
  expect([...perRoot.keys()].sort()).toEqual([...fixture.roots].sort());
  const causes = emissionCauses(fixture.roots, fixture.events);
  for (const root of fixture.roots) {
    const stream = perRoot.get(root)!;
    const n = fixture.expected[root]!.emissions_per_event_mode;
    expect(sequenceNumbers(stream)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(canonical.get(root)).toEqual(sequenceNumbers(stream));
    const last = stream.updates.at(-1)!;
    const final = fixture.expected[root]!.final;
    expect({ root_id: last.root_id, tree: last.tree, canonical_space_ids: last.canonical_space_ids }).toEqual(
      {
        root_id: final.root_id,
        tree: final.tree,
        canonical_space_ids: final.canonical_space_ids,
      },
    );
    const cause = causes.get(root)!;
    expect(cause).toHaveLength(n);
    stream.updates.forEach((u, k) => {
      expect(u.meta, `meta of ${root} #${k + 1}`).toEqual(expectedMeta(fixture.events[cause[k]!]!));
      expect(stream.messages[k]!.headers.traceparent, `traceparent of ${root} #${k + 1}`).toBe(
        traceparentOf(cause[k]!),
      );
    });
  }
  // Nothing waits in Redis either; only what the reference calls bad (conflicts, invalid) was dead-lettered.
  await p.waitDrained(30_000);
  const { conflicts, invalid } = expectationOf(fixture.roots, fixture.events);
  const dead = (await p.deadLetters()).map((d) => d.original.event_id).sort();
  expect(dead).toEqual([...conflicts, ...invalid].sort());
  await expectContracts(p);
  return perRoot;
}

/**
 * Every entry of the route's streams holds what its stream's contract (stages/streams.ts) and
 * the runtime's carried fields say: an entry its fields, a skip marker its marker's.
 */
async function expectContracts(p: E2EPipeline): Promise<void> {
  const route = Object.entries(contracts) as [keyof typeof contracts, StreamContract][];
  for (const [name, contract] of route) {
    const entries = await readAll(fx.redis, p.keys.stream(streams[name]));
    expect(entries.length, `entries of ${name}`).toBeGreaterThan(0);
    for (const e of entries) {
      const own = e.has('skip') ? ['skip', ...(contract.marker ?? [])] : contract.fields;
      const missing = [...own, ...carriedFields].filter((f) => !e.has(f) && !e.has(`${f}@blob`));
      expect(missing, `${name} entry ${e.id}`).toEqual([]);
    }
  }
}

/** What must be equal between two runs: every update, in order (traceparents differ by design). */
const updatesOf = (perRoot: Map<string, RootStream>): Record<string, DecodedUpdate[]> =>
  Object.fromEntries([...perRoot].sort(([a], [b]) => a.localeCompare(b)).map(([r, s]) => [r, s.updates]));

it('finds the fixture files', () => {
  const files = readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.json'));
  expect(files.length).toBeGreaterThan(0);
  expect(fixtures.map((f) => f.file).sort()).toEqual(files.sort());
});

describe.each(fixtures.map((f) => [f.name, f] as const))('fixture %s', (_name, fixture) => {
  let first: Record<string, DecodedUpdate[]> | undefined;

  it('atlas up, one POST /events per event: the topic holds exactly the expected updates', async () => {
    const p = newPipeline(fixture, 'e2e-fx-up');
    await kafkaInit(p.topic);
    await p.up();
    const traceparent = (i: number) => traceparentFor(i);
    await p.post(fixture.events, { mode: 'single', traceparent });
    first = updatesOf(await expectTopic(p, fixture, traceparent));
    expect(p.crashes()).toEqual([]);
    await p.stop();
  }, 120_000);

  it('six stages in separate processes, two serialize replicas, out-of-order serialized stream: the same updates', async () => {
    const p = newPipeline(fixture, 'e2e-fx-split');
    await kafkaInit(p.topic);
    // The group exists before any emission, so the dying consumer can take the first one.
    await fx.redis.xgroup('CREATE', p.keys.stream(streams.canonical), 'serialize', '0', 'MKSTREAM');
    await Promise.all([
      p.run('ingest', ['ingest']),
      p.run('validate', ['validate']),
      p.run('transitive', ['transitive']),
      p.run('canonical', ['canonical']),
      p.run('emit', ['emit']),
    ]);
    const traceparent = traceparentFor(1_000_000);
    await p.post(fixture.events, { mode: 'batch', traceparent: () => traceparent });
    const total = totalOf(fixture);
    await eventually(async () => (await fx.redis.xlen(p.keys.stream(streams.canonical))) === total, 30_000);

    // A serialize consumer reads the first emission and dies before acknowledging it; the replicas
    // take it over only after 5 s idle, when they have long written the others.
    await fx.redis.xreadgroup(
      'GROUP',
      'serialize',
      'dead-replica',
      'COUNT',
      1,
      'STREAMS',
      p.keys.stream(streams.canonical),
      '>',
    );
    const replica = { ATLAS_BATCH_SIZE: '1', ATLAS_CLAIM_IDLE_MS: '5000' };
    await Promise.all([
      p.run('serialize-a', ['serialize'], replica),
      p.run('serialize-b', ['serialize'], replica),
    ]);
    const perRoot = await expectTopic(p, fixture, () => traceparent);

    // The replicas did write out of order: the emit stage put it right.
    const serialized = (await readAll(fx.redis, p.keys.stream(streams.serialized))).map((e) => [
      e.text('root'),
      Number(e.text('sequence_number')),
    ]);
    expect(serialized).toHaveLength(total);
    expect(serialized.at(-1)![1]).toBe(1);

    expect(p.crashes()).toEqual([]);
    await p.stop();
    if (first) expect(updatesOf(perRoot)).toEqual(first);
  }, 120_000);
});
