/**
 * Snapshots and the retention a rebuild needs, against a real Redis with validate and transitive
 * in this process: with no snapshot the validated stream is kept whole whatever ATLAS_RETAIN_*
 * say, while the ingest stream follows its own per-stream setting; once snapshots are taken
 * (every ATLAS_SNAPSHOT_EVERY entries, the newest ATLAS_SNAPSHOT_KEEP kept), the validated
 * stream is trimmed up to the oldest kept snapshot's floor and a rebuild from that snapshot works.
 */
import { afterAll, expect, it } from 'vitest';
import { streams } from '../../stages/streams.ts';
import { createTransitive } from '../../stages/transitive/index.ts';
import { listSnapshots, snapshotKeys } from '../../stages/transitive/snapshot.ts';
import { createValidate } from '../../stages/validate/index.ts';
import { testConfig } from '../support/config.ts';
import { acceptEvents, atlasOn } from '../support/control.ts';
import { spaceCreated, spaceId, trustExtended } from '../support/events.ts';
import { eventually, stays } from '../support/eventually.ts';
import { useRedis } from '../support/redis.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('control-snapshots');
afterAll(stopStages);

const settings = {
  ATLAS_ROOT_SPACE_ID: spaceId(1),
  ATLAS_RETAIN_ENTRIES: 0,
  ATLAS_RETAIN_STREAMS: 'ingest=3',
};

async function applied(n: number): Promise<void> {
  await eventually(
    async () => expect(Number(await fx.redis.hget(fx.keys.of('order', 'transitive'), ''))).toBe(n + 1),
    60_000,
  );
}

it('keeps what a rebuild needs: all of validated before the first snapshot, from the oldest kept one after', async () => {
  await startStage(createValidate, testConfig(fx.prefix, settings));
  const first = await startStage(
    createTransitive,
    testConfig(fx.prefix, { ...settings, ATLAS_SNAPSHOT_EVERY: 0 }),
  );
  await acceptEvents(
    fx.redis,
    fx.keys,
    [1, 2, 3, 4, 5, 6, 7, 8].map((n) => spaceCreated(n)),
  );
  await applied(8);
  // ingest: its own setting (3); validated: everything, no snapshot yet.
  await eventually(async () => expect(await fx.redis.xlen(fx.keys.stream(streams.ingest))).toBe(3), 30_000);
  await stays(async () => expect(await fx.redis.xlen(fx.keys.stream(streams.validated))).toBe(8), 2500);

  await first.stop();
  await startStage(
    createTransitive,
    testConfig(fx.prefix, {
      ...settings,
      ATLAS_SNAPSHOT_EVERY: 4,
      ATLAS_SNAPSHOT_KEEP: 2,
      ATLAS_BATCH_SIZE: 4,
    }),
  );
  for (let n = 2; n <= 13; n++) await acceptEvents(fx.redis, fx.keys, [trustExtended(1, n > 8 ? 2 : n)]);
  await applied(20);
  const kept = await eventually(async () => {
    const s = await listSnapshots(fx.redis, snapshotKeys(fx.keys));
    expect(s.length).toBe(2);
    return s;
  }, 30_000);
  expect(await fx.redis.exists(...[1, 2, 3, 4, 5].map((n) => snapshotKeys(fx.keys).snapshot(n)))).toBe(0);
  // Trimmed up to the oldest kept snapshot's floor, and no further.
  await eventually(async () => {
    const [oldest] = await fx.redis.xrange(fx.keys.stream(streams.validated), '-', '+', 'COUNT', 1);
    expect(oldest![0]).toBe(kept[0]!.floor);
  }, 30_000);

  const rebuild = await atlasOn(fx.prefix, [
    'rebuild',
    'transitive',
    '--at',
    String(kept[0]!.next - 1),
    '--json',
  ]);
  expect(rebuild.stderr).toBe('');
  const result = JSON.parse(rebuild.stdout).result;
  expect(result).toMatchObject({ from: kept[0]!.next, events: 20 - (kept[0]!.next - 1), stateChanges: 0 });
  // Before the oldest kept snapshot the events are gone: refused, naming the missing seq.
  const tooFar = await atlasOn(fx.prefix, ['rebuild', 'transitive', '--at', '0']);
  expect(tooFar.code).toBe(1);
  expect(tooFar.stderr).toContain('no longer holds event seq 1');
}, 240_000);
