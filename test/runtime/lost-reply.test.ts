/**
 * A lost reply to the XREADGROUP that delivered entries (finding 1): the fault proxy between a
 * singleton stage process and Redis swallows that reply and cuts the connection. ioredis
 * reconnects and re-sends the read, which no longer sees the entries as new: they are pending
 * under the live consumer. No other consumer takes them over (a singleton has none; replicas
 * would after ATLAS_CLAIM_IDLE_MS), so the stage itself must read them again — well before
 * ATLAS_CLAIM_IDLE_MS, which is set far beyond the bound here.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../support/eventually.ts';
import { FaultProxy } from '../support/fault-proxy.ts';
import { GraphPipeline } from '../support/graph-pipeline.ts';
import { generateScenario } from '../support/graph-scenario.ts';
import { killChildren, spawnStage } from '../support/processes.ts';
import { REDIS_URL, useRedis } from '../support/redis.ts';
import { addEntries, fieldValues, numericSort, pendingCount, range } from '../support/streams.ts';

/** How long the stage may take to get over the lost reply; ATLAS_CLAIM_IDLE_MS is 3 times that. */
const BOUND_MS = 20_000;

const fx = useRedis('lost-reply');
let proxy: FaultProxy;

beforeAll(async () => {
  proxy = await FaultProxy.start({ target: new URL(REDIS_URL).host });
});

afterEach(() => killChildren());

afterAll(async () => {
  await proxy.stop();
});

describe.each(['singleton', 'ordered-singleton'])('a %s stage whose read reply is lost', (kind) => {
  it('processes every entry of the lost delivery, and what follows it', async () => {
    const { prefix, keys } = fx.freshPrefix(kind);
    const input = keys.stream('in');
    const output = keys.stream('out');
    const stage = spawnStage(kind, {
      REDIS_URL: proxy.redisUrl,
      ATLAS_PREFIX: prefix,
      ATLAS_CLAIM_IDLE_MS: String(3 * BOUND_MS),
      ATLAS_BLOCK_MS: '100',
      ATLAS_LEASE_MS: '1000',
      LOG_LEVEL: 'info',
    });
    await stage.waitForLog('active', 15_000);
    const dropped = proxy.dropReplyTo('XREADGROUP', { nonEmpty: true });
    await addEntries(
      fx.redis,
      input,
      range(5).map((seq) => ({ seq })),
    );
    const lost = await dropped;
    expect(lost.entries).toBeGreaterThan(0);
    await addEntries(
      fx.redis,
      input,
      range(5, 6).map((seq) => ({ seq })),
    );
    await eventually(
      async () => {
        const pending = await pendingCount(fx.redis, input, kind);
        const out = await fx.redis.xlen(output);
        if (pending > 0 || out < 10)
          throw new Error(
            `${out} of 10 entries out, ${pending} pending after the lost reply of ${lost.entries}`,
          );
        return true;
      },
      BOUND_MS,
      100,
    );
    expect(numericSort(await fieldValues(fx.redis, output, 'seq'))).toEqual(range(10));
    expect(stage.exit).toBeUndefined();
  }, 60_000);
});

describe('the transitive stage (atlas run transitive) whose read reply is lost', () => {
  it('applies every event of the lost delivery, and what follows it', async () => {
    const scenario = generateScenario({ seed: 7, events: 60, tag: 'lost-reply' });
    const p = new GraphPipeline(fx.redis, fx.freshPrefix('lost-transitive').prefix, scenario.roots, {
      ATLAS_CLAIM_IDLE_MS: String(3 * BOUND_MS),
      ATLAS_BLOCK_MS: '100',
    });
    await p.spawn('door', ['ingest', 'validate']);
    const transitive = await p.spawn('transitive', ['transitive'], {
      REDIS_URL: proxy.redisUrl,
      LOG_LEVEL: 'info',
    });
    await transitive.waitForLog('active', 15_000);
    const half = scenario.events.length / 2;
    /** Why transitive has not applied every accepted event yet (null once it has). */
    const behind = async () => {
      const [accepted, done, pending] = [
        await p.acceptedCount(),
        await p.transitiveDone(),
        await p.pending('transitive'),
      ];
      return done === accepted && pending === 0
        ? null
        : `${done} of ${accepted} events applied, ${pending} pending`;
    };
    await p.post(scenario.events.slice(0, half), { mode: 'single' });
    await p.waitUntil('applied', behind, 30_000, 100);
    const dropped = proxy.dropReplyTo('XREADGROUP', { nonEmpty: true });
    await p.post(scenario.events.slice(half), { mode: 'batch', batchSize: 10 });
    expect((await dropped).entries).toBeGreaterThan(0);
    await p.waitUntil('applied', behind, BOUND_MS, 100);
    expect(transitive.exit).toBeUndefined();
  }, 90_000);
});
