/**
 * Conflation (ATLAS_CONFLATE_MS=300): the changes of a root within the window leave as one
 * emission. A burst of events that each change the graph produces fewer emissions than
 * per-event mode would, with the same final graph and dense sequence numbers; and a kill -9 of
 * the canonical process inside the window loses nothing — its inputs were still pending, the
 * new instance takes them over and the final graph arrives.
 */
import { afterEach, expect, it } from 'vitest';
import { envelope, spaceId, topicId } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { expectEndState } from '../support/graph-expect.ts';
import { GraphPipeline } from '../support/graph-pipeline.ts';
import { type Envelope, expectationOf } from '../support/graph-scenario.ts';
import { killChildren } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { pendingCount } from '../support/streams.ts';

const fx = useRedis('graph-conflate');
afterEach(async () => {
  await killChildren();
});

const CONFLATE_MS = 300;
const IDLE_BLOCK_MS = 2000;
const R = 1;
const R2 = 2;
const roots = [spaceId(R), spaceId(R2)];

let block = 0;
const meta = () => {
  block++;
  return {
    block_number: block,
    block_timestamp: 1_700_000_000 + block,
    tx_hash: `0x${'0'.repeat(64)}`,
    cursor: `c${block}`,
  };
};
const created = (n: number, topic = n): Envelope =>
  envelope('space.created', {
    space_id: spaceId(n),
    topic_id: topicId(topic),
    space_type: { kind: 'personal', owner: 'ab'.repeat(32) },
    meta: meta(),
  });
const trust = (type: 'extended' | 'revoked', from: number, extension: Record<string, string>): Envelope =>
  envelope(`space.trust_${type}`, { source_space_id: spaceId(from), extension, meta: meta() });
const verified = (from: number, to: number, type: 'extended' | 'revoked' = 'extended') =>
  trust(type, from, { kind: 'verified', target_space_id: spaceId(to) });
const subtopic = (from: number, topic: number) =>
  trust('extended', from, { kind: 'subtopic', target_topic_id: topicId(topic) });

// Burst 1: the roots, 20 spaces (spaces 11 and 12 share topic 11), then a chain from R through
// all of them: every extension changes R's graph.
const burst1: Envelope[] = [
  created(R),
  created(R2),
  ...Array.from({ length: 20 }, (_, i) => created(10 + i, i === 2 ? 11 : 10 + i)),
  verified(R, 10),
  ...Array.from({ length: 19 }, (_, i) => verified(10 + i, 11 + i)),
  verified(R2, 10),
];
// Burst 2: cut the chain, re-attach part of it, attach a topic; each changes R's graph.
const burst2: Envelope[] = [
  verified(15, 16, 'revoked'),
  verified(R, 20),
  subtopic(R, 11),
  verified(25, 26, 'revoked'),
  verified(12, 25),
  verified(R, 29),
];

it('a burst for a root leaves as fewer emissions, when the window closes; the final graph is the same and the numbers dense', async () => {
  const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-conflate').prefix, roots, {
    ATLAS_CONFLATE_MS: String(CONFLATE_MS),
    // Longer than the window: an idle canonical stage must still close it on time.
    ATLAS_BLOCK_MS: String(IDLE_BLOCK_MS),
  });
  await Promise.all([
    p.spawn('front', ['ingest', 'validate', 'transitive']),
    p.spawn('canonical', ['canonical']),
  ]);
  await p.post(burst1, { mode: 'batch' });
  // The window opens when the canonical stage holds the burst's graphs, and closes CONFLATE_MS later.
  const input = p.keys.stream('transitive');
  await eventually(async () => (await pendingCount(fx.redis, input, 'canonical')) > 0, 30_000, 2);
  const held = performance.now();
  await eventually(async () => (await fx.redis.xlen(p.keys.stream('canonical'))) > 0, 30_000, 2);
  const windowMs = performance.now() - held;
  expect(windowMs).toBeGreaterThanOrEqual(CONFLATE_MS - 100);
  expect(windowMs).toBeLessThan(IDLE_BLOCK_MS / 2);
  await p.waitIdle();

  const expected = expectationOf(roots, burst1);
  expect(expected.emissions[spaceId(R)]).toBe(21); // per-event: the first graph, then one per extension
  const counts = await expectEndState(p, expected, { perEvent: false });
  expect(counts[spaceId(R)]).toBeLessThan(expected.emissions[spaceId(R)]!);
  expect(counts[spaceId(R)]).toBeLessThanOrEqual(3);
  expect(counts[spaceId(R2)]).toBeLessThan(expected.emissions[spaceId(R2)]!);
  // The emitted graph carries the metadata of the latest event it includes.
  const last = (await p.emissions()).get(spaceId(R))!.at(-1)!;
  const lastChange = burst1.at(-2)!.payload.meta as { block_number: number };
  expect(last.graph.meta.block_number).toBe(String(lastChange.block_number));
  await p.stop();
}, 120_000);

it('kill -9 of canonical inside the window loses nothing: the final graph still arrives', async () => {
  const p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-conflate').prefix, roots, {
    ATLAS_CONFLATE_MS: String(CONFLATE_MS),
    ATLAS_LEASE_MS: '1000',
  });
  await Promise.all([
    p.spawn('front', ['ingest', 'validate', 'transitive']),
    p.spawn('canonical', ['canonical']),
  ]);
  await p.post(burst1, { mode: 'batch' });
  await p.waitIdle();
  const posted = [...burst1];
  const emittedFor = async (root: number) => (await p.emissions()).get(spaceId(root))!.length;
  const input = p.keys.stream('transitive');

  // A starved test process may see the window close before its kill lands: then another burst.
  let landed = 0;
  for (const burst of [burst2, freshChildren(40), freshChildren(60)]) {
    const before = await fx.redis.xlen(p.keys.stream('canonical'));
    const beforeR = await emittedFor(R);
    const perEventBefore = expectationOf(roots, posted).emissions[spaceId(R)]!;
    await p.post(burst, { mode: 'batch' });
    posted.push(...burst);
    // The canonical stage holds the burst's graphs (read, not acknowledged) until the window closes.
    await eventually(async () => (await pendingCount(fx.redis, input, 'canonical')) > 0, 30_000, 2);
    await p.kill9('canonical');
    // Inside the window: nothing emitted yet, the inputs still pending under the dead consumer.
    const inside =
      (await fx.redis.xlen(p.keys.stream('canonical'))) === before &&
      (await pendingCount(fx.redis, input, 'canonical')) > 0;
    await p.restart('canonical');
    await p.waitIdle();
    // The burst's final graph arrived, conflated: at least one emission, fewer than per-event.
    const perEvent = expectationOf(roots, posted).emissions[spaceId(R)]! - perEventBefore;
    expect(perEvent).toBe(burst.length);
    expect((await emittedFor(R)) - beforeR).toBeGreaterThanOrEqual(1);
    expect((await emittedFor(R)) - beforeR).toBeLessThan(perEvent);
    if (inside) {
      landed++;
      break;
    }
  }
  expect(landed, 'a kill inside the conflation window').toBe(1);
  await expectEndState(p, expectationOf(roots, posted), { perEvent: false });
  await p.stop();
}, 120_000);

/** Events that each give R one more child (spaces that were never created are nodes too). */
function freshChildren(from: number): Envelope[] {
  return Array.from({ length: 6 }, (_, i) => verified(R, from + i));
}
