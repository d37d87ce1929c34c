/**
 * `atlas kafka init` and `atlas tail` against the real Kafka (the CLI as a child process): an
 * idempotent init that checks the topic there, tail --json with partition and offset, no
 * consumer group left behind, and a cleanup that removes the topic.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCanonicalGraphUpdated } from '../../stages/serialize/decode.ts';
import { deleteTopics, KAFKA_BROKER, kafkaClient, uniqueTopic, withAdmin } from '../support/e2e-kafka.ts';
import { message, root } from '../support/out-messages.ts';
import { runAtlas } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('cli-kafka');
const topic = uniqueTopic('cli');
const env = { KAFKA_BROKER, KAFKA_TOPIC_CANONICAL: topic, ATLAS_PREFIX: fx.prefix };
afterAll(() => deleteTopics([topic]));

describe('atlas kafka init', () => {
  it('creates the topic once; run again it checks it and warns on each difference, without a kafkajs log line', async () => {
    const first = await runAtlas(['kafka', 'init', '--partitions', '2'], env, 60_000);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe(`${topic}: created (partitions=2, replication-factor=1)\n`);
    expect(first.stderr).toBe('');

    const again = await runAtlas(['kafka', 'init', '--partitions', '2'], env, 60_000);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(`${topic}: exists already\n`);
    expect(again.stderr).toBe('');

    const other = await runAtlas(['kafka', 'init', '--partitions', '4'], env, 60_000);
    expect(other.code).toBe(0);
    expect(other.stdout).toBe(`${topic}: exists already\n`);
    expect(other.stderr).toBe(
      `atlas: warning: topic ${topic} differs from the pipeline's settings: partitions: 2 on the broker, 4 wanted\n`,
    );
    expect(other.stdout + other.stderr).not.toMatch(/ERROR|KafkaJS/);
  });

  it('refuses a bad --partitions before connecting (exit 2)', async () => {
    const r = await runAtlas(['kafka', 'init', '--partitions', 'many'], {
      ...env,
      KAFKA_BROKER: '127.0.0.1:1',
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('atlas: --partitions must be a positive whole number, got many\n');
  });
});

describe('atlas tail --json', () => {
  it('prints each message with its partition and offset, and leaves no consumer group on the broker', async () => {
    const producer = kafkaClient('cli-tail').producer();
    await producer.connect();
    const sent = [message(root(1), 1), message(root(2), 1), message(root(1), 2)];
    await producer.send({
      topic,
      messages: sent.map((m) => ({ key: m.rootId, value: Buffer.from(m.value) })),
    });
    await producer.disconnect();
    const groupsBefore = await withAdmin(async (admin) =>
      (await admin.listGroups()).groups.map((g) => g.groupId),
    );

    const r = await runAtlas(['tail', '--from-beginning', '--exit', '--json'], env, 60_000);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(line.partition).toEqual(expect.any(Number));
      expect(line.offset).toMatch(/^\d+$/);
    }
    const seen = lines.map((l) => `${l.root_id}#${l.sequence_number}`).sort();
    const wanted = sent.map((m) => {
      const v = decodeCanonicalGraphUpdated(m.value);
      return `${v.root_id}#${v.sequence_number}`;
    });
    expect(seen).toEqual(wanted.sort());

    const groupsAfter = await withAdmin(async (admin) =>
      (await admin.listGroups()).groups.map((g) => g.groupId),
    );
    expect(groupsAfter.filter((g) => g.startsWith('atlas-tail-') && !groupsBefore.includes(g))).toEqual([]);
  });
});

describe('atlas cleanup --topic', () => {
  it('removes the pipeline keys and its topic', async () => {
    await fx.redis.set(fx.keys.of('checkpoint', 'x'), '1');
    const refused = await runAtlas(['cleanup', '--topic'], env, 60_000);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(`would remove 1 key of prefix ${fx.prefix} and Kafka topic ${topic}`);
    const r = await runAtlas(['cleanup', '--topic', '--yes'], env, 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`removed 1 keys of prefix ${fx.prefix} and Kafka topic ${topic}\n`);
    expect(await withAdmin((admin) => admin.listTopics())).not.toContain(topic);
  });
});
