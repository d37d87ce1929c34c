/**
 * Graph diffs end to end: the whole pipeline publishes in ATLAS_EMIT_MODE=both (a diff per
 * emission after a root's first, every third also carrying the whole tree) to the real broker,
 * and each example consumer (clients/consumers/*), run as its own process, follows the topic:
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
  await p.post(scenario.events, { mode: 'batch', batchSize: 50 });
  await waitForCount(topic, total, 120_000);
  await p.stop();
}, 1_200_000);

afterAll(async () => {
  await killChildren();
  await deleteTopics([topic]).catch(() => undefined);
  await lock?.release();
}, 60_000);

describe('the pipeline in ATLAS_EMIT_MODE=both', () => {
  it('publishes each root a snapshot first, then one diff per emission, headers naming each', async () => {
    const messages = await readTopic(topic);
    const byRoot = new Map<string, string[]>();
    for (const m of messages) {
      const root = m.key!.toString('hex');
      byRoot.set(root, [...(byRoot.get(root) ?? []), m.headers['message-name']!]);
    }
    for (const root of scenario.roots) {
      const names = byRoot.get(root)!;
      expect(names.length).toBe(expected.emissions[root]);
      expect(names).toEqual(names.map((_, i) => (i === 0 ? SNAPSHOT_MESSAGE : DIFF_MESSAGE)));
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
    const diffs = total - scenario.roots.length;
    const verified = scenario.roots.reduce((n, r) => n + Math.floor(expected.emissions[r]! / EVERY), 0);
    expect(out.counts).toEqual({ snapshots: scenario.roots.length, diffs, verified });
  }, 120_000);
});
