/**
 * Rebuilding the transitive state after it went wrong (a graph rule "fixed": simulated by
 * removing an edge from the stored state, as a bug would have). Five stages run in this process
 * against a real Redis, the output going to the Redis stream sink. The damaged state makes
 * transitive compute a wrong graph for one root, which canonical emits; `atlas rebuild
 * transitive` then applies the events again (from the first one, or from a snapshot) and
 * downstream gets exactly the update of the root whose graph differs from the last emitted —
 * numbered next, never a duplicate — and the graph is the reference implementation's. A second
 * rebuild emits nothing; `atlas republish` emits one update with the next number.
 */
import { afterAll, expect, it } from 'vitest';
import type { Keys } from '../../pipeline/keys.ts';
import type { StageFactory } from '../../pipeline/stage.ts';
import { createCanonical } from '../../stages/canonical/index.ts';
import { createEmit } from '../../stages/emit/index.ts';
import { createSerialize } from '../../stages/serialize/index.ts';
import { streams } from '../../stages/streams.ts';
import { checkpointKeys } from '../../stages/transitive/checkpoint.ts';
import { createTransitive } from '../../stages/transitive/index.ts';
import { createValidate } from '../../stages/validate/index.ts';
import { testConfig } from '../support/config.ts';
import { acceptEvents, atlasOn } from '../support/control.ts';
import { type Envelope, spaceCreated, spaceId, trustExtended } from '../support/events.ts';
import { eventually } from '../support/eventually.ts';
import { plainTree } from '../support/graph-pipeline.ts';
import { expectationOf } from '../support/graph-scenario.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';
import { type RunningStage, startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('control-rebuild');
afterAll(stopStages);

const R1 = 1;
const R2 = 4;
const roots = [spaceId(R1), spaceId(R2)];
const config = () => testConfig(fx.prefix, { ATLAS_ROOT_SPACE_ID: roots.join(','), ATLAS_SNAPSHOT_EVERY: 0 });

interface Update {
  root: string;
  seq: number;
}

/** What canonical emitted, and what reached the sink (`{prefix}:out:<topic>`), in order. */
async function updates(keys: Keys): Promise<{ canonical: Update[]; sink: Update[] }> {
  const canonical = (await readAll(fx.redis, keys.stream(streams.canonical)))
    .filter((e) => !e.has('skip'))
    .map((e) => ({ root: e.text('root'), seq: Number(e.text('sequence_number')) }));
  const sink = (await readAll(fx.redis, keys.stream('out:topology.canonical'))).map((e) => ({
    root: e.text('root'),
    seq: Number(e.text('seq')),
  }));
  return { canonical, sink };
}

async function settled(keys: Keys, canonicalCount: number): Promise<{ canonical: Update[]; sink: Update[] }> {
  return eventually(async () => {
    const u = await updates(keys);
    expect(u.canonical).toHaveLength(canonicalCount);
    // The sink keeps each root's order, not the order across roots.
    expect(byRoot(u.sink)).toEqual(byRoot(u.canonical));
    return u;
  }, 60_000);
}

function byRoot(list: Update[]): Update[] {
  return [...list].sort((a, b) => a.root.localeCompare(b.root) || a.seq - b.seq);
}

async function post(events: Envelope[]): Promise<void> {
  await acceptEvents(fx.redis, fx.keys, events);
  const count = Number(await fx.redis.get(fx.keys.seq));
  await eventually(
    async () => Number(await fx.redis.hget(fx.keys.of('order', 'transitive'), '')) === count + 1,
    60_000,
  );
}

/** A "bug": the stored state loses an edge; transitive is restarted so it loads the damage. */
async function damage(transitive: RunningStage, edge: string): Promise<RunningStage> {
  await transitive.stop();
  expect(await fx.redis.srem(checkpointKeys(fx.keys).edges, edge)).toBe(1);
  return startStage(createTransitive, config());
}

async function shown(root: string): Promise<unknown> {
  const r = await atlasOn(fx.prefix, ['canonical', 'show', root, '--json']);
  expect(r.code).toBe(0);
  const g = JSON.parse(r.stdout);
  return { root_id: g.root_id, canonical_space_ids: g.canonical_space_ids, tree: plainTree(g.tree) };
}

it('a rebuild after a changed graph rule emits exactly the differing graphs, numbered on', async () => {
  const factories: StageFactory[] = [createValidate, createCanonical, createSerialize, createEmit];
  for (const f of factories) await startStage(f, config());
  let transitive = await startStage(createTransitive, config());
  const events: Envelope[] = [
    ...[1, 2, 3, 4, 5, 6].map((n) => spaceCreated(n)),
    trustExtended(1, 2),
    trustExtended(4, 5),
  ];
  await post(events);
  const first = await settled(fx.keys, 2 + 2);

  // The damage: R1 loses its edge to 2; the next event makes transitive send R1's wrong graph.
  transitive = await damage(transitive, `${spaceId(1)}|${spaceId(2)}|verified`);
  const late = trustExtended(2, 3);
  events.push(late);
  await post([late]);
  const wrong = await settled(fx.keys, first.canonical.length + 1);
  expect(wrong.canonical.at(-1)).toEqual({ root: roots[0], seq: 3 });

  // Rebuilt from the first event (no snapshot yet): exactly R1 again, numbered 4.
  const rebuild = await atlasOn(fx.prefix, ['rebuild', 'transitive', '--json']);
  expect(rebuild.stderr).toBe('');
  expect(rebuild.code).toBe(0);
  const job = JSON.parse(rebuild.stdout);
  expect(job.state).toBe('completed');
  expect(job.result).toMatchObject({ from: 0, events: events.length, stateChanges: 1, rootsCompared: 2 });
  const fixed = await settled(fx.keys, wrong.canonical.length + 1);
  expect(fixed.canonical.slice(wrong.canonical.length)).toEqual([{ root: roots[0], seq: 4 }]);
  const expected = expectationOf(roots, events).finals;
  expect(await shown(roots[0]!)).toEqual(expected[roots[0]!]);
  expect(await shown(roots[1]!)).toEqual(expected[roots[1]!]);

  // Again: nothing differs any more, nothing is emitted.
  const again = await atlasOn(fx.prefix, ['rebuild', 'transitive', '--json']);
  expect(JSON.parse(again.stdout).result.stateChanges).toBe(0);
  const transitiveLength = await fx.redis.xlen(fx.keys.stream(streams.transitive));
  await eventually(async () => (await canonicalRead()) === transitiveLength, 30_000);
  expect((await updates(fx.keys)).canonical).toEqual(fixed.canonical);

  // From a snapshot: taken now, then R2 is damaged, then rebuilt from the snapshot.
  const snap = await atlasOn(fx.prefix, ['snapshot', 'transitive']);
  expect(snap.code).toBe(0);
  expect(snap.stdout).toContain(`snapshot of the transitive state at seq ${events.length + 1}`);
  const more = [trustExtended(5, 6)];
  events.push(...more);
  await post(more);
  const beforeDamage = await settled(fx.keys, fixed.canonical.length + 1); // R2 gains 6
  transitive = await damage(transitive, `${spaceId(4)}|${spaceId(5)}|verified`);
  const touch = [trustExtended(3, 6)];
  events.push(...touch);
  await post(touch);
  const damaged = await settled(fx.keys, beforeDamage.canonical.length + 2); // R1 gains 6; R2 loses 5
  const fromSnap = await atlasOn(fx.prefix, ['rebuild', 'transitive', '--json']);
  const result = JSON.parse(fromSnap.stdout).result;
  expect(result).toMatchObject({ from: events.length - 1, events: 2, stateChanges: 1 });
  expect(result.summary).toContain(`from the snapshot at seq ${events.length - 1}`);
  const r2Seq = damaged.canonical.filter((u) => u.root === roots[1]).at(-1)!.seq;
  const healed = await settled(fx.keys, damaged.canonical.length + 1);
  expect(healed.canonical.at(-1)).toEqual({ root: roots[1], seq: r2Seq + 1 });
  const finals = expectationOf(roots, events).finals;
  expect(await shown(roots[0]!)).toEqual(finals[roots[0]!]);
  expect(await shown(roots[1]!)).toEqual(finals[roots[1]!]);

  // Republish: one more update of that root, the same graph, the next number.
  const republish = await atlasOn(fx.prefix, ['republish', '--root', roots[0]!]);
  expect(republish.code).toBe(0);
  const r1Seq = healed.canonical.filter((u) => u.root === roots[0]).at(-1)!.seq;
  const after = await settled(fx.keys, healed.canonical.length + 1);
  expect(after.canonical.at(-1)).toEqual({ root: roots[0], seq: r1Seq + 1 });
  const bad = await atlasOn(fx.prefix, ['rebuild', 'validate']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('transitive, canonical');
}, 300_000);

async function canonicalRead(): Promise<number> {
  const groups = (await fx.redis.xinfo('GROUPS', fx.keys.stream(streams.transitive))) as unknown[][];
  const g = groups.find((x) => x[x.indexOf('name') + 1] === 'canonical')!;
  return Number(g[g.indexOf('entries-read') + 1]);
}
