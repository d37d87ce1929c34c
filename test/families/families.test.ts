/**
 * Event families end to end, against the real Redis and Kafka: the whole pipeline (`atlas up`)
 * takes envelopes of every family over HTTP JSON; the generic ones come out on their family's
 * topic (rendered from the payload) with their key and schema headers, as JSON of the current
 * version; topology still comes out as canonical graphs. Upcasting, expiry (DLQ `expired`,
 * counted), local storage and queries, summary windows.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laneStream, lanes } from '../../pipeline/lanes.ts';
import { EVENTS, streams } from '../../stages/streams.ts';
import {
  decodeWithStage,
  deleteTopics,
  KAFKA_BROKER,
  kafkaInit,
  readTopic,
  type TopicMessage,
  uniqueTopic,
} from '../support/e2e-kafka.ts';
import { E2EPipeline } from '../support/e2e-pipeline.ts';
import { type Envelope, envelope, spaceCreated, spaceId } from '../support/events.ts';
import { eventually, stays } from '../support/eventually.ts';
import { request } from '../support/http.ts';
import { unfinishedLink } from '../support/pipeline-processes.ts';
import { runAtlas } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { readAll } from '../support/streams.ts';

const fx = useRedis('families');
const run = randomUUID().slice(0, 8);
const game = `g${run}`;
const layer = `l${run}`;
const algorithm = `bfs${run}`;
const topologyTopic = uniqueTopic('families');
const ROOT = spaceId(0xf1);
let p: E2EPipeline;

beforeAll(async () => {
  await kafkaInit(topologyTopic);
  p = new E2EPipeline(fx.redis, { prefix: fx.prefix, topic: topologyTopic, roots: [ROOT] });
  await p.up();
}, 120_000);

afterAll(async () => {
  await p?.stop();
  await deleteTopics([
    topologyTopic,
    ...['players', 'scores', 'matches'].map((t) => `game.${game}.${t}`),
    `kasmina.telemetry.layer.${layer}.health`,
    `kasmina.telemetry.layer.${layer}.metrics`,
    `graph.algorithm.${algorithm}.lifecycle`,
    `graph.algorithm.${algorithm}.activations`,
  ]);
}, 120_000);

/** The topic's messages once it holds at least `n` whose event-id is one of `ids` (when given). */
async function messagesOn(topic: string, n: number, ids?: Set<string>): Promise<TopicMessage[]> {
  return eventually(
    async () => {
      const all = await readTopic(topic, 10_000, KAFKA_BROKER);
      const mine = ids ? all.filter((m) => ids.has(m.headers['event-id'] ?? '')) : all;
      if (mine.length < n) throw new Error(`${topic}: ${mine.length} of ${n} messages`);
      return mine;
    },
    60_000,
    250,
  );
}

const json = (m: TopicMessage) => JSON.parse(m.value!.toString('utf8'));

describe('each family over HTTP JSON to its topic, key and headers', () => {
  it('game: a player joins → game.<id>.players, key = player, schema headers, the payload as JSON', async () => {
    const e = envelope(
      'game.player_joined',
      { game_id: game, player_id: 'p-1', team: 'red' },
      { source: 'game-server' },
    );
    await p.post([e]);
    const [m] = await messagesOn(`game.${game}.players`, 1);
    expect(m!.key!.toString()).toBe('p-1');
    expect(m!.headers).toMatchObject({
      'content-type': 'application/json',
      'schema-name': 'game/game.player_joined',
      'schema-version': '1',
      'event-type': 'game.player_joined',
      'event-id': e.event_id,
      priority: 'normal',
    });
    expect(json(m!)).toEqual({ game_id: game, player_id: 'p-1', team: 'red' });
  });

  it('kasmina: telemetry on its hierarchical topic; a lifecycle command and its ack on control topics', async () => {
    const health = envelope('kasmina.telemetry.layer_health', {
      layer_id: layer,
      health: 0.93,
      latency_ms: 4.5,
    });
    const command = envelope('kasmina.control.lifecycle', {
      command_id: `c${run}`,
      seed_id: `s${run}`,
      action: 'germinate',
    });
    const ack = envelope('kasmina.control.lifecycle_ack', {
      command_id: `c${run}`,
      seed_id: `s${run}`,
      status: 'accepted',
    });
    await p.post([health, command, ack], { mode: 'batch' });
    const [h] = await messagesOn(`kasmina.telemetry.layer.${layer}.health`, 1);
    expect(h!.key!.toString()).toBe(layer);
    expect(json(h!)).toEqual({ layer_id: layer, health: 0.93, latency_ms: 4.5 });
    const [c] = await messagesOn('kasmina.control.lifecycle', 1, new Set([command.event_id]));
    expect(c!.headers).toMatchObject({ 'event-type': 'kasmina.control.lifecycle', priority: 'critical' });
    expect(c!.key!.toString()).toBe(`s${run}`);
    const [a] = await messagesOn('kasmina.control.lifecycle.ack', 1, new Set([ack.event_id]));
    // The door put the two critical events of the mixed batch on their own ingest lane.
    const criticalIds = (await readAll(fx.redis, p.keys.stream(laneStream(streams.ingest, 'critical')))).map(
      (e) => e.text('event_id'),
    );
    expect(criticalIds).toEqual(expect.arrayContaining([command.event_id, ack.event_id]));
    expect(criticalIds).not.toContain(health.event_id);
    expect(json(a!)).toEqual({ command_id: `c${run}`, seed_id: `s${run}`, status: 'accepted' });
  });

  it('graph: algorithm start, node activations and completion on the algorithm topics, key = run', async () => {
    const runId = `r${run}`;
    const events = [
      envelope('graph.algorithm_started', { run_id: runId, algorithm, graph_id: 'g-1' }),
      ...[1, 2, 3].map((step) =>
        envelope('graph.node_activated', { run_id: runId, algorithm, node_id: `n${step}`, step }),
      ),
      envelope('graph.algorithm_completed', { run_id: runId, algorithm, steps: 3, duration_ms: 12 }),
    ];
    await p.post(events, { mode: 'batch' });
    const lifecycle = await messagesOn(`graph.algorithm.${algorithm}.lifecycle`, 2);
    expect(lifecycle.map((m) => m.headers['event-type'])).toEqual([
      'graph.algorithm_started',
      'graph.algorithm_completed',
    ]);
    const activations = await messagesOn(`graph.algorithm.${algorithm}.activations`, 3);
    // One key, one partition: in the order posted.
    expect(activations.map((m) => json(m).step)).toEqual([1, 2, 3]);
    expect(new Set(activations.map((m) => m.key!.toString()))).toEqual(new Set([runId]));
  });

  it('topology still folds into canonical graphs, its seq dense beside the generic events', async () => {
    await p.post([spaceCreated(0xf1)]);
    const [m] = await messagesOn(topologyTopic, 1);
    expect(decodeWithStage(m!.value!).root_id).toBe(ROOT);
    await eventually(async () => expect(await p.notDrained()).toBeNull(), 30_000);
  });
});

describe('schema evolution', () => {
  it('game.score_updated v1 is upcast to v2 (score → points) beside v2 events; headers say v2', async () => {
    const v1 = envelope('game.score_updated', { game_id: game, player_id: 'p-1', score: 7 });
    const v2 = envelope(
      'game.score_updated',
      { game_id: game, player_id: 'p-1', points: 9, reason: 'goal' },
      { version: 2 },
    );
    await p.post([v1, v2]);
    const got = await messagesOn(`game.${game}.scores`, 2);
    expect(got.map((m) => m.headers['schema-version'])).toEqual(['2', '2']);
    expect(got.map(json)).toEqual([
      { game_id: game, player_id: 'p-1', points: 7, reason: 'unspecified' },
      { game_id: game, player_id: 'p-1', points: 9, reason: 'goal' },
    ]);
  });

  it('an unknown version is dead-lettered as unsupported_version; an unknown type as unknown_event_type', async () => {
    const v9 = envelope('game.score_updated', { game_id: game, player_id: 'p-1', points: 1 }, { version: 9 });
    const unknown = envelope('game.unheard_of', { game_id: game });
    await p.post([v9, unknown]);
    const reasons = await eventually(async () => {
      const dead = await p.deadLetters();
      const byId = new Map(dead.map((d) => [d.original.event_id, d.reason]));
      if (!byId.has(v9.event_id) || !byId.has(unknown.event_id)) return false;
      return byId;
    }, 30_000);
    expect(reasons.get(v9.event_id)).toBe('unsupported_version');
    expect(reasons.get(unknown.event_id)).toBe('unknown_event_type');
  });
});

describe('expiry, local events, summaries', () => {
  it('an event past its TTL is not delivered: dead-lettered as expired and counted', async () => {
    const stale: Envelope = envelope(
      'game.match_ended',
      { game_id: game, winner: 'p-1', duration_ms: 1000 },
      { timestamp: Date.now() - 2 * 86_400_000 },
    );
    const fresh = envelope('game.match_ended', { game_id: game, winner: 'p-2', duration_ms: 2000 });
    await p.post([stale, fresh]);
    const dead = await eventually(async () => {
      const found = (await p.deadLetters()).find((d) => d.original.event_id === stale.event_id);
      return found ?? false;
    }, 30_000);
    // game.match_ended is a `high` event: its lane's publish stage saw it expired.
    expect(dead).toMatchObject({ stage: 'publish-high', reason: 'expired' });
    const matches = await messagesOn(`game.${game}.matches`, 1);
    expect(matches.map((m) => m.headers['event-id'])).toEqual([fresh.event_id]);
    expect(await p.metrics()).toMatch(/atlas_events_expired_total\{event_type="game.match_ended"\} 1/);
  });

  it('local events are stored, never published, and queryable over HTTP and with atlas events query', async () => {
    const before = Date.now() - 1000;
    const moves = [1, 2].map((x) =>
      envelope('game.player_moved', { game_id: game, player_id: 'p-1', x, y: 0 }),
    );
    await p.post(moves);
    const url = `${p.doorUrl()}/events?type=game.player_moved&since=${before}`;
    const answer = await eventually(async () => {
      const a = await request(url);
      expect(a.status).toBe(200);
      if (a.body.events.length < 2) return false;
      return a;
    }, 30_000);
    const mine = answer.body.events.filter(
      (e: { payload: { game_id: string } }) => e.payload.game_id === game,
    );
    expect(mine.map((e: { event_id: string }) => e.event_id)).toEqual(moves.map((m) => m.event_id));
    expect(mine[0].payload).toEqual({ game_id: game, player_id: 'p-1', x: 1, y: 0 });

    const cli = await runAtlas(
      ['events', 'query', '--type', 'game.player_moved', '--since', String(before)],
      {
        ATLAS_PREFIX: fx.prefix,
      },
    );
    expect(cli.code).toBe(0);
    const lines = cli.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.event_id)).toEqual(expect.arrayContaining(moves.map((m) => m.event_id)));

    expect((await request(`${p.doorUrl()}/events?type=game.player_joined`)).status).toBe(400);
    const topics = await (async () => {
      const { withAdmin } = await import('../support/e2e-kafka.ts');
      return withAdmin((admin) => admin.listTopics());
    })();
    expect(topics).not.toContain(`game.${game}.moves`);
  });

  it('summary events: one published event per window with the count and the sums', async () => {
    const metrics = [3, 4, 5].map((samples) =>
      envelope('kasmina.telemetry.layer_metrics', { layer_id: layer, samples, errors: samples % 2 }),
    );
    await p.post(metrics, { mode: 'batch' });
    const topic = `kasmina.telemetry.layer.${layer}.metrics`;
    const got = await messagesOn(topic, 1);
    // The batch landed in one request, so usually in one window; a window edge may split it.
    const summaries = got.map(json);
    expect(summaries.reduce((n, s) => n + s.count, 0)).toBe(3);
    expect(summaries.reduce((n, s) => n + s.sums.samples, 0)).toBe(12);
    expect(summaries.reduce((n, s) => n + s.sums.errors, 0)).toBe(2);
    expect(got[0]!.headers['event-type']).toBe('kasmina.telemetry.layer_metrics.summary');
    await stays(
      async () => {
        const total = (await readTopic(topic, 10_000, KAFKA_BROKER))
          .map(json)
          .reduce((n, s) => n + s.count, 0);
        expect(total).toBe(3);
      },
      3000,
      500,
    );
  });

  it('everything posted is accounted for: the publish stage drained its stream', async () => {
    const links = lanes.map((lane): [string, string] => [laneStream(EVENTS, lane), `publish-${lane}`]);
    await eventually(async () => expect(await unfinishedLink(fx.redis, p.keys, links)).toBeNull(), 30_000);
  });
});
