/**
 * Priority lanes under a flood, measured end to end (HTTP in → Kafka out) against the real Redis
 * and Kafka: the whole pipeline (`atlas up`) takes a flood of low-priority events
 * (graph.node_activated, posted in batches by autocannon) while probes go in one at a time at a
 * steady rate — critical ones (kasmina.control.lifecycle, their own lane) and low ones (the same
 * type as the flood, so they queue behind it: what every event would see without lanes). A Kafka
 * consumer stamps each probe's arrival; the latencies are reported per phase (quiet, flood,
 * drain), with the flood's own end-to-end rate.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 KAFKA_BROKER=127.0.0.1:9092 node load/bench-lanes.ts
 *
 * Settings (environment): LANES_QUIET_S (5), LANES_FLOOD_S (15), LANES_CONNECTIONS (4),
 * LANES_BATCH_EVENTS (100), LANES_PROBES_PER_S (10), LANES_FLOOD_RATE (flood requests/s, 0 = as fast as
 * the door answers), LANES_PROCESSES (`split`: door, validate and publish lanes in processes of their
 * own; default `atlas up`), LANES_HTTP_PORT (17710), ATLAS_LANE_WEIGHTS.
 * Keys of its prefix are deleted and its topics removed at the end.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import kafkajs from 'kafkajs';
import { keys as keysFor } from '../pipeline/keys.ts';
import { laneStream } from '../pipeline/lanes.ts';
import { prepareKafkajs } from '../stages/emit/kafkajs-node24.ts';
import { EVENTS } from '../stages/streams.ts';

const ROOT = resolve(import.meta.dirname, '..');
const num = (name: string, def: number) => Number(process.env[name] ?? def);
const QUIET_S = num('LANES_QUIET_S', 5);
const FLOOD_S = num('LANES_FLOOD_S', 15);
const CONNECTIONS = num('LANES_CONNECTIONS', 4);
const BATCH = num('LANES_BATCH_EVENTS', 100);
const PROBES_PER_S = num('LANES_PROBES_PER_S', 10);
const PORT = num('LANES_HTTP_PORT', 17710);
/** Flood requests per second over all connections; 0 = as fast as the door answers. */
const FLOOD_RATE = num('LANES_FLOOD_RATE', 0);
/** `split`: the door, validate and each publish lane in processes of their own; else `atlas up`. */
const SPLIT = process.env.LANES_PROCESSES === 'split';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const BROKER = process.env.KAFKA_BROKER ?? '127.0.0.1:9092';

const run = randomUUID().slice(0, 8);
const prefix = `lanes-${run}`;
const algorithm = `flood${run}`;
const floodTopic = `graph.algorithm.${algorithm}.activations`;
const criticalTopic = 'kasmina.control.lifecycle';
const canonicalTopic = `lanes-canonical-${run}`;
const url = `http://127.0.0.1:${PORT}`;

type Phase = 'quiet' | 'flood' | 'drain';
interface Probe {
  kind: 'critical' | 'low';
  phase: Phase;
  sentAt: number;
  latencyMs?: number;
}

const probes = new Map<string, Probe>();
const floodSeen = new Set<string>();
let floodArrived = 0;
let phase: Phase = 'quiet';

function envelope(eventType: string, eventId: string, payload: object): string {
  return JSON.stringify({
    event_id: eventId,
    event_type: eventType,
    source: 'bench-lanes',
    timestamp: Date.now(),
    version: 1,
    payload,
  });
}

async function post(path: string, body: string): Promise<number> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  await res.arrayBuffer();
  return res.status;
}

let probeN = 0;
async function sendProbe(kind: Probe['kind']): Promise<void> {
  const id = `probe-${run}-${kind}-${probeN++}`;
  const body =
    kind === 'critical'
      ? envelope('kasmina.control.lifecycle', id, {
          command_id: `c${probeN}`,
          seed_id: `probe${run}`,
          action: 'freeze',
        })
      : envelope('graph.node_activated', id, {
          run_id: 'probe',
          algorithm,
          node_id: `p${probeN}`,
          step: probeN,
        });
  probes.set(id, { kind, phase, sentAt: performance.now() });
  const status = await post('/events', body);
  if (status !== 202) probes.delete(id);
}

/** Probes at a steady rate, alternating critical and low, until stopped. */
function probing(): () => Promise<void> {
  let on = true;
  const loop = (async () => {
    for (let i = 0; on; i++) {
      void sendProbe(i % 2 === 0 ? 'critical' : 'low');
      await delay(1000 / PROBES_PER_S);
    }
  })();
  return async () => {
    on = false;
    await loop;
  };
}

/** The process layout under test: `atlas up`, or one process per part with LANES_PROCESSES=split. */
function startPipeline(): ChildProcess[] {
  if (!SPLIT) return [startAtlas(['up'])];
  return [
    startAtlas(['run', 'ingest']),
    startAtlas(['run', 'validate', 'transitive', 'canonical', 'serialize', 'emit']),
    startAtlas(['run', 'validate-critical', 'publish-critical']),
    startAtlas(['run', 'publish-high', 'publish-normal', 'publish-low']),
  ];
}

function startAtlas(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [resolve(ROOT, 'ops/cli/atlas.ts'), ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: 'production',
      ATLAS_PREFIX: prefix,
      REDIS_URL,
      KAFKA_BROKER: BROKER,
      KAFKA_TOPIC_CANONICAL: canonicalTopic,
      ATLAS_HTTP_PORT: String(PORT),
      ATLAS_METRICS_PORT: '0',
      ATLAS_HIGH_WATER: String(10_000_000),
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return child;
}

async function waitForDoor(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${url}/health`)).ok) return;
    } catch {}
    await delay(100);
  }
  throw new Error('the door did not come up');
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function report(): void {
  const rows: string[] = [
    '| probe | phase | n | p50 ms | p99 ms | max ms | lost |',
    '|:--|:--|--:|--:|--:|--:|--:|',
  ];
  for (const kind of ['critical', 'low'] as const) {
    for (const ph of ['quiet', 'flood', 'drain'] as const) {
      const mine = [...probes.values()].filter((p) => p.kind === kind && p.phase === ph);
      const got = mine.filter((p) => p.latencyMs !== undefined).map((p) => p.latencyMs!);
      if (mine.length === 0) continue;
      const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '-');
      rows.push(
        `| ${kind} | ${ph} | ${got.length} | ${f(quantile(got, 0.5))} | ${f(quantile(got, 0.99))} | ${f(quantile(got, 1))} | ${mine.length - got.length} |`,
      );
    }
  }
  console.log(rows.join('\n'));
}

async function main(): Promise<void> {
  prepareKafkajs();
  const kafka = new kafkajs.Kafka({
    clientId: `bench-lanes-${run}`,
    brokers: BROKER.split(','),
    logLevel: kafkajs.logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [floodTopic, criticalTopic, canonicalTopic].map((topic) => ({ topic, numPartitions: 3 })),
    waitForLeaders: true,
  });
  const consumer = kafka.consumer({ groupId: `bench-lanes-${run}`, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topics: [floodTopic, criticalTopic], fromBeginning: false });
  let assigned = false;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    assigned = true;
  });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const id = message.headers?.['event-id']?.toString() ?? '';
      const probe = probes.get(id);
      if (probe) probe.latencyMs ??= performance.now() - probe.sentAt;
      else if (id.startsWith(`flood-${run}`)) {
        floodArrived++;
        floodSeen.add(id);
      }
    },
  });
  const redis = new Redis(REDIS_URL);
  const pipeline = startPipeline();
  try {
    await waitForDoor();
    while (!assigned) await delay(100);
    await delay(2000); // the publish lanes have their producers
    console.log(
      `bench-lanes: prefix {${prefix}}, quiet ${QUIET_S}s, flood ${FLOOD_S}s (${CONNECTIONS} conns × ${BATCH} events/request), ${PROBES_PER_S} probes/s, flood rate ${FLOOD_RATE || 'max'} req/s, ${SPLIT ? 'split processes' : 'atlas up'}, weights ${process.env.ATLAS_LANE_WEIGHTS ?? 'default'}`,
    );
    const stopProbes = probing();
    await delay(QUIET_S * 1000);

    phase = 'flood';
    let n = 0;
    const floodBody = () => {
      let s = '[';
      for (let i = 0; i < BATCH; i++) {
        const id = `flood-${run}-${n++}`;
        s += `${i ? ',' : ''}${envelope('graph.node_activated', id, { run_id: `f${i % 16}`, algorithm, node_id: id, step: n })}`;
      }
      return `${s}]`;
    };
    const floodStarted = performance.now();
    const result = await autocannon({
      url,
      connections: CONNECTIONS,
      duration: FLOOD_S,
      ...(FLOOD_RATE > 0 ? { overallRate: FLOOD_RATE } : {}),
      requests: [
        {
          method: 'POST',
          path: '/events/batch',
          headers: { 'content-type': 'application/json' },
          setupRequest: (req) => ({ ...req, body: floodBody() }),
        },
      ],
    });
    const accepted = result['2xx'] * BATCH;
    const lowBacklog = await redis.xlen(keysFor(prefix).stream(laneStream(EVENTS, 'low')));
    console.log(
      `flood: ${accepted} low events accepted in ${FLOOD_S}s (${Math.round(accepted / FLOOD_S)}/s at the door, non-2xx ${result.non2xx}); ${floodArrived} on Kafka by the end of the flood; events:low holds ${lowBacklog} entries`,
    );

    phase = 'drain';
    const deadline = performance.now() + 120_000;
    while (floodSeen.size < accepted && performance.now() < deadline) await delay(200);
    const drainS = (performance.now() - floodStarted) / 1000;
    console.log(`flood duplicates on Kafka: ${floodArrived - floodSeen.size}`);
    console.log(
      `flood end to end: ${floodSeen.size} of ${accepted} on Kafka after ${drainS.toFixed(1)}s → ${Math.round(floodSeen.size / drainS)} events/s through the bus`,
    );
    await stopProbes();
    await delay(3000);
    report();
  } finally {
    for (const child of pipeline) child.kill('SIGTERM');
    await consumer.disconnect();
    await admin.deleteTopics({ topics: [floodTopic, canonicalTopic] }).catch(() => undefined);
    await admin.deleteGroups([`bench-lanes-${run}`]).catch(() => undefined);
    await admin.disconnect();
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `{${prefix}}*`, 'COUNT', 1000);
      cursor = next;
      if (found.length > 0) await redis.del(...found);
    } while (cursor !== '0');
    redis.disconnect();
  }
}

await main();
