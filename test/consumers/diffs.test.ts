/**
 * Graph diffs end to end: the whole pipeline publishes in ATLAS_EMIT_MODE=both (a diff per
 * emission after a root's first, every third also carrying the whole tree) to the real broker,
 * and is killed (-9) and restarted halfway: serialize then holds no base, so each root's first
 * emission after the restart must be a snapshot. Each example consumer (clients/consumers/*), run
 * as its own process, follows the topic:
 * it starts from each root's first snapshot, applies every diff, checks each against its tree
 * hash and, where a diff carries the tree, against that tree (counted as verified), and must end
 * on the naive reference's final graph of every root with no anomaly.
 *
 * clients/consumers/setup builds the Python and Go consumers first (cached in .run/consumers/).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIFF_MESSAGE, SNAPSHOT_MESSAGE } from '../../stages/serialize/diff-codec.ts';
import {
  deleteTopics,
  KAFKA_BROKER,
  kafkaInit,
  readTopic,
  uniqueTopic,
  waitForCount,
} from '../support/e2e-kafka.ts';
import { type HeldLock, lockBroker } from '../support/e2e-lock.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { expectationOf, type FinalGraph, generateScenario } from '../support/graph-scenario.ts';
import { killChildren, ROOT } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const run = promisify(execFile);
const HERE = join(ROOT, 'clients', 'consumers');
const BUILT = join(ROOT, '.run', 'consumers');
const EVERY = 3;

const CONSUMERS: Record<string, string[]> = {
  typescript: [process.execPath, join(HERE, 'typescript', 'consume.ts')],
  python: [join(BUILT, 'venv', 'bin', 'python'), join(HERE, 'python', 'consume.py')],
  go: [join(BUILT, 'bin', 'atlas-consumer')],
};
const LANGUAGES = (process.env.ATLAS_TEST_CONSUMERS ?? Object.keys(CONSUMERS).join(',')).split(',');

interface Output {
  latest: Record<string, FinalGraph & { sequence_number: number }>;
  anomalies: unknown[];
  counts: { snapshots: number; diffs: number; verified: number };
}

async function consume(language: string, topic: string): Promise<Output> {
  const [command, ...args] = CONSUMERS[language]!;
  const { stdout } = await run(
    command!,
    [...args, '--broker', KAFKA_BROKER, '--topic', topic, '--until-end'],
    {
      timeout: 60_000,
      env: { ...process.env, PYTHONPATH: join(BUILT, 'python') },
    },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Output;
}

// Few topics over few spaces: every root's final tree holds hundreds of attached (topic) nodes.
const scenario = generateScenario({ seed: 5, events: 300, spaces: 20, topics: 3, tag: 'diffs' });
const expected = expectationOf(scenario.roots, scenario.events);
const total = scenario.roots.reduce((n, r) => n + expected.emissions[r]!, 0);
const half = Math.floor(scenario.events.length / 2);
const beforeRestart = expectationOf(scenario.roots, scenario.events.slice(0, half)).emissions;

/** Per root, the message each emission must be: a snapshot first and first after the restart. */
function expectedNames(root: string): string[] {
  return Array.from({ length: expected.emissions[root]! }, (_, i) =>
    i === 0 || i === beforeRestart[root] ? SNAPSHOT_MESSAGE : DIFF_MESSAGE,
  );
}
const fx = useRedis('diffs');
const topic = uniqueTopic('diffs');
let lock: HeldLock | undefined;

beforeAll(async () => {
  lock = await lockBroker('shared');
  const builds = LANGUAGES.filter((l) => l !== 'typescript');
  if (builds.length > 0) await run('bash', [join(HERE, 'setup'), ...builds], { timeout: 600_000 });
  const p = new E2EPipeline(fx.redis, {
    prefix: fx.freshPrefix('diffs').prefix,
    topic,
    roots: scenario.roots,
    env: { ATLAS_EMIT_MODE: 'both', ATLAS_SNAPSHOT_EVERY_DIFFS: String(EVERY) },
  });
  await kafkaInit(topic);
  await p.up();
  await p.post(scenario.events.slice(0, half), { mode: 'batch', batchSize: 50 });
  await waitForCount(
    topic,
    Object.values(beforeRestart).reduce((a, b) => a + b, 0),
    120_000,
  );
  await p.restart('all');
  await p.post(scenario.events.slice(half), { mode: 'batch', batchSize: 50 });
  await waitForCount(topic, total, 120_000);
  await p.stop();
}, 1_200_000);

afterAll(async () => {
  await killChildren();
  await deleteTopics([topic]).catch(() => undefined);
  await lock?.release();
}, 60_000);

describe('the pipeline in ATLAS_EMIT_MODE=both', () => {
  it('publishes a snapshot at each root start and restart, else one diff per emission, headers naming each', async () => {
    const messages = await readTopic(topic);
    const byRoot = new Map<string, string[]>();
    for (const m of messages) {
      const root = m.key!.toString('hex');
      byRoot.set(root, [...(byRoot.get(root) ?? []), m.headers['message-name']!]);
    }
    for (const root of scenario.roots) {
      const names = byRoot.get(root)!;
      expect(names).toEqual(expectedNames(root));
    }
  }, 120_000);
});

describe.each(LANGUAGES)('the %s consumer, following the diffs', (language) => {
  it('ends on every root final graph, each diff applied and verified, no anomaly', async () => {
    const out = await consume(language, topic);
    expect(out.anomalies).toEqual([]);
    for (const root of scenario.roots) {
      const { sequence_number, ...graph } = out.latest[root]!;
      expect(graph).toEqual(expected.finals[root]);
      expect(sequence_number).toBe(expected.emissions[root]);
    }
    const names = scenario.roots.flatMap(expectedNames);
    const snapshots = names.filter((n) => n === SNAPSHOT_MESSAGE).length;
    // A diff carries the tree when its sequence_number is a multiple of EVERY.
    const verified = scenario.roots.flatMap((r) =>
      expectedNames(r).filter((n, i) => n === DIFF_MESSAGE && (i + 1) % EVERY === 0),
    ).length;
    expect(snapshots).toBeGreaterThan(scenario.roots.length);
    expect(out.counts).toEqual({ snapshots, diffs: total - snapshots, verified });
  }, 120_000);
});
