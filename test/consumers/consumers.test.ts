/**
 * The example consumers of topology.canonical (clients/consumers/{typescript,python,go}), each run
 * as its own process in its --until-end mode against the real Kafka broker:
 *
 * - on a topic the whole pipeline published a fixture to (each of shared/fixtures/topology): each
 *   prints the fixture's final graph as the latest of its root, and reports no gap and no repeat;
 * - on a topic of crafted messages, written in transactions (one aborted) and zstd-compressed:
 *   each skips the aborted message (read committed), reports the repeat it skips and the gap it
 *   applies, decodes a tree nested deeper than protobuf's default limit of 100, and prints the
 *   last committed graph of each root; on a message that does not decode, each exits 1 naming it.
 *
 * clients/consumers/setup builds the Python and Go consumers first (cached in .run/consumers/).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCanonicalGraphUpdated } from '../../stages/serialize/encode.ts';
import {
  createTopic,
  deleteTopics,
  KAFKA_BROKER,
  kafkaClient,
  kafkaInit,
  uniqueTopic,
  waitForCount,
} from '../support/e2e-kafka.ts';
import { type HeldLock, lockBroker } from '../support/e2e-lock.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { type FinalGraph, loadFixtures } from '../support/graph-scenario.ts';
import { killChildren, ROOT } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const run = promisify(execFile);
const HERE = join(ROOT, 'clients', 'consumers');
const BUILT = join(ROOT, '.run', 'consumers');

/** Each consumer's command line, up to the arguments every one takes. */
const CONSUMERS: Record<string, string[]> = {
  typescript: [process.execPath, join(HERE, 'typescript', 'consume.ts')],
  python: [join(BUILT, 'venv', 'bin', 'python'), join(HERE, 'python', 'consume.py')],
  go: [join(BUILT, 'bin', 'atlas-consumer')],
};
const LANGUAGES = Object.keys(CONSUMERS);

interface Output {
  latest: Record<string, FinalGraph & { sequence_number: number }>;
  anomalies: { kind: 'gap' | 'repeat'; root: string; expected: number; got: number }[];
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

const fixtures = loadFixtures();
const fx = useRedis('consumers');
const craftedTopic = uniqueTopic('consumers-crafted');
const topics = [craftedTopic];
let lock: HeldLock | undefined;

beforeAll(async () => {
  lock = await lockBroker('shared');
  // First run on a machine: a venv with three wheels, protoc-gen-go and a Go build (minutes,
  // mostly compiling); then well under a second.
  await run('bash', [join(HERE, 'setup'), ...LANGUAGES.filter((l) => l !== 'typescript')], {
    timeout: 600_000,
  });
}, 1_200_000);

afterAll(async () => {
  await killChildren();
  await deleteTopics(topics).catch(() => undefined);
  await lock?.release();
}, 60_000);

describe.each(fixtures.map((f) => [f.name, f] as const))(
  'on the topic the pipeline published fixture %s to',
  (_name, fixture) => {
    const pipelineTopic = uniqueTopic('consumers');
    topics.push(pipelineTopic);

    beforeAll(async () => {
      const p = new E2EPipeline(fx.redis, {
        prefix: fx.freshPrefix('consumers').prefix,
        topic: pipelineTopic,
        roots: fixture.roots,
      });
      await kafkaInit(pipelineTopic);
      await p.up();
      await p.post(fixture.events, { mode: 'batch' });
      const total = fixture.roots.reduce((n, r) => n + fixture.expected[r]!.emissions_per_event_mode, 0);
      await waitForCount(pipelineTopic, total, 60_000);
      await p.stop();
    }, 120_000);

    it.each(LANGUAGES)(
      '%s: the latest graph of each root is the final one, no gap, no repeat',
      async (language) => {
        const out = await consume(language, pipelineTopic);
        expect(out.anomalies).toEqual([]);
        expect(Object.keys(out.latest).sort()).toEqual([...fixture.roots].sort());
        for (const root of fixture.roots) {
          const { sequence_number, ...graph } = out.latest[root]!;
          expect(graph).toEqual(fixture.expected[root]!.final);
          expect(sequence_number).toBe(fixture.expected[root]!.emissions_per_event_mode);
        }
      },
    );
  },
);

describe('on crafted messages: a repeat, a gap, an aborted transaction, a deep tree', () => {
  const A = 'a1000000000000000000000000000001';
  const B = 'b2000000000000000000000000000002';
  const DEEP = 'd3000000000000000000000000000003';
  type Update = FinalGraph & { sequence_number: number };
  type Node = Update['tree'];
  /**
   * The root over a chain of `depth` verified spaces whose ids name the sequence number and the
   * level, so each update differs.
   */
  const graph = (root: string, seq: number, depth = 1): Update => {
    const ids = Array.from(
      { length: depth },
      (_, i) => `c${seq.toString(16).padStart(15, '0')}${i.toString(16).padStart(16, '0')}`,
    );
    const tree: Node = { space_id: root, edge: 'root', topic_id: null, children: [] };
    let parent = tree;
    for (const space_id of ids) {
      const child: Node = { space_id, edge: 'verified', topic_id: null, children: [] };
      parent.children.push(child);
      parent = child;
    }
    return { root_id: root, tree, canonical_space_ids: [root, ...ids].sort(), sequence_number: seq };
  };
  const id = (hex: string) => Buffer.from(hex, 'hex');
  /** Encoded by the pipeline's own encoder: protobufjs's generated one stops at 100 levels. */
  const message = (root: string, seq: number, depth = 1) => {
    const g = graph(root, seq, depth);
    // The wire table lists subtrees children first: the deepest space, …, the root.
    const chain: Node[] = [];
    for (let n: Node | undefined = g.tree; n; n = n.children[0]) chain.unshift(n);
    const value = encodeCanonicalGraphUpdated(
      {
        root_id: root,
        hash: '',
        expanded_nodes: chain.length,
        canonical_space_ids: g.canonical_space_ids,
        nodes: chain.map((n, i) => [n.space_id, n.edge, '', i === 0 ? [] : [i - 1]]),
        meta: { block_number: String(seq), block_timestamp: '1732300000', tx_hash: '', cursor: `c${seq}` },
      },
      seq,
    );
    return { key: id(root), value: Buffer.from(value), headers: { 'sequence-number': String(seq) } };
  };

  beforeAll(async () => {
    await createTopic(craftedTopic);
    const producer = kafkaClient('consumers-crafted').producer({
      transactionalId: `atlas-${craftedTopic}`,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    const inTransaction = async (messages: ReturnType<typeof message>[], commit: boolean) => {
      const tx = await producer.transaction();
      await tx.send({ topic: craftedTopic, compression: kafkajs.CompressionTypes.ZSTD, messages });
      await (commit ? tx.commit() : tx.abort());
    };
    try {
      await inTransaction([message(A, 1), message(A, 2), message(B, 1), message(DEEP, 1, 300)], true);
      await inTransaction([message(A, 3)], false);
      await inTransaction([message(A, 2), message(A, 4), message(B, 2)], true);
    } finally {
      await producer.disconnect();
    }
  }, 60_000);

  it.each(LANGUAGES)(
    '%s: skips the aborted message and the repeat, flags the gap, decodes the deep tree',
    async (language) => {
      const out = await consume(language, craftedTopic);
      expect(out.anomalies).toEqual([
        { kind: 'repeat', root: A, expected: 3, got: 2 },
        { kind: 'gap', root: A, expected: 3, got: 4 },
      ]);
      expect(out.latest).toEqual({ [A]: graph(A, 4), [B]: graph(B, 2), [DEEP]: graph(DEEP, 1, 300) });
    },
  );

  describe('and bytes that are not a CanonicalGraphUpdated', () => {
    const badTopic = uniqueTopic('consumers-bad');
    topics.push(badTopic);

    beforeAll(async () => {
      await createTopic(badTopic, 1);
      const producer = kafkaClient('consumers-bad').producer();
      await producer.connect();
      // Field 1 (root_id) says 16 bytes follow; one does.
      const truncated = { key: id(A), value: Buffer.from([0x0a, 0x10, 0x01]) };
      await producer.send({ topic: badTopic, messages: [message(A, 1), truncated] });
      await producer.disconnect();
    }, 60_000);

    it.each(LANGUAGES)('%s: exits 1 naming the message', async (language) => {
      const failed = await consume(language, badTopic).then(
        (out) => ({ code: 0, stderr: JSON.stringify(out) }),
        (err: { code?: number; stderr?: string }) => err,
      );
      expect(failed.code).toBe(1);
      expect(failed.stderr).toContain('partition 0 offset 1');
    });
  });
});
