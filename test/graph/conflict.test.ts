/**
 * space.created for an existing space with another topic is a conflict (DESIGN §3): the state
 * and every graph stay as they are and the event goes to the DLQ as `space_conflict`. Redriven
 * with `atlas dlq redrive`, it re-enters the transitive stage's input with a new seq and is
 * dead-lettered again for the same reason — still without touching anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelope, spaceId, topicId } from '../support/events.ts';
import { GraphPipeline } from '../support/graph-pipeline.ts';
import { type Envelope, expectationOf } from '../support/graph-scenario.ts';
import { killChildren, runAtlas } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';

const fx = useRedis('graph-conflict');

const R = 1;
const A = 3;
const B = 4;
let block = 0;
const meta = () => {
  block++;
  return {
    block_number: block,
    block_timestamp: 1_700_000_000 + block,
    tx_hash: '0x01',
    cursor: `c${block}`,
  };
};
const created = (n: number, topic: number): Envelope =>
  envelope('space.created', {
    space_id: spaceId(n),
    topic_id: topicId(topic),
    space_type: { kind: 'dao', initial_editors: [], initial_members: [] },
    meta: meta(),
  });
const extended = (from: number, extension: Record<string, string>): Envelope =>
  envelope('space.trust_extended', { source_space_id: spaceId(from), extension, meta: meta() });

// A and B both announce topic 5; R reaches both and has a subtopic edge to topic 5, so the
// canonical graph attaches A's and B's trees under R by topic. Were A's topic changed, A's
// attachment would go: the conflict below would be visible in the graph.
const setup: Envelope[] = [
  created(R, 1),
  created(A, 5),
  created(B, 5),
  extended(R, { kind: 'verified', target_space_id: spaceId(A) }),
  extended(R, { kind: 'related', target_space_id: spaceId(B) }),
  extended(A, { kind: 'verified', target_space_id: spaceId(B) }),
  extended(R, { kind: 'subtopic', target_topic_id: topicId(5) }),
];
const conflict = created(A, 9);
const sameTopicAgain = created(B, 5);

describe('a space_conflict', () => {
  let p: GraphPipeline;
  let before: Awaited<ReturnType<typeof snapshot>>;

  beforeAll(async () => {
    p = new GraphPipeline(fx.redis, fx.freshPrefix('graph-conflict').prefix, [spaceId(R)]);
    await p.spawn('all', ['ingest', 'validate', 'transitive', 'canonical']);
    await p.post(setup, { mode: 'single' });
    await p.waitIdle();
    before = await snapshot();
    const expected = expectationOf([spaceId(R)], setup);
    expect(before.shown).toEqual({
      ...expected.finals[spaceId(R)],
      sequence_number: expected.emissions[spaceId(R)],
    });
    // The graph has A under R by topic 5: a changed topic of A would show.
    expect(JSON.stringify(before.shown.tree)).toContain(`"space_id":"${spaceId(A)}","edge":"topic"`);
  }, 60_000);
  afterAll(async () => {
    await p?.stop();
    await killChildren();
  });

  /** Everything a conflict must leave alone. */
  async function snapshot() {
    return {
      shown: await p.show(spaceId(R)),
      canonical: await fx.redis.xlen(p.keys.stream('canonical')),
      transitive: await fx.redis.xlen(p.keys.stream('transitive')),
      checkpoint: await p.checkpoint(),
    };
  }

  it('goes to the DLQ as space_conflict; state and graphs unchanged (a same-topic re-creation is a silent no-op)', async () => {
    await p.post([conflict, sameTopicAgain], { mode: 'single' });
    await p.waitIdle();
    expect(await snapshot()).toEqual(before);
    expect(before.checkpoint.topics[spaceId(A)]).toBe(topicId(5));

    const dlq = await p.deadLetters();
    expect(dlq).toHaveLength(1);
    expect(dlq[0]).toMatchObject({
      stage: 'transitive',
      reason: 'space_conflict',
      attempts: 1,
      stream: p.keys.stream('validated'),
      original: { event_id: conflict.event_id, seq: String(setup.length + 1), event_type: 'space.created' },
    });
    expect(dlq[0]!.error).toContain(spaceId(A));
  });

  it('atlas dlq redrive: it re-enters with a new seq and is dead-lettered again as a conflict; still nothing changes', async () => {
    const [dead] = await p.deadLetters();
    const seqBefore = await p.acceptedCount();
    const { code, stdout, stderr } = await runAtlas(['dlq', 'redrive', dead!.id], { ATLAS_PREFIX: p.prefix });
    expect(code, stderr).toBe(0);
    expect(stdout).toContain(`${dead!.id} → ${p.keys.stream('validated')}`);
    expect(stdout).toContain('redriven: 1');
    expect(await p.acceptedCount()).toBe(seqBefore + 1);

    await p.waitIdle();
    const dlq = await p.deadLetters();
    expect(dlq).toHaveLength(1);
    expect(dlq[0]!.id).not.toBe(dead!.id);
    expect(dlq[0]).toMatchObject({
      stage: 'transitive',
      reason: 'space_conflict',
      stream: p.keys.stream('validated'),
      original: { event_id: conflict.event_id, seq: String(seqBefore + 1), event: dead!.original.event },
      // the loop is visible: the new dead letter names the one it was redriven from
      history: {
        count: 1,
        previous: [dead!.id],
        firstReason: 'space_conflict',
        firstFailedAt: dead!.failedAt,
      },
    });
    expect(await snapshot()).toEqual(before);
    // The stage moved on past the redriven seq: later events still apply.
    await p.post([extended(B, { kind: 'verified', target_space_id: spaceId(7) })], { mode: 'single' });
    await p.waitIdle();
    const shown = await p.show(spaceId(R));
    expect(shown.sequence_number).toBe(before.shown.sequence_number + 1);
    expect(shown.canonical_space_ids).toContain(spaceId(7));
  });
});
