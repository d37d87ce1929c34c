/**
 * The inter-stage wire of the graph stages, measured on the real stages against Redis: the
 * transitive and canonical processes (`atlas run transitive`, `atlas run canonical`) on a root
 * that reaches almost all of `size` spaces (plain random digraph, out-degree 3, as in
 * bench-graph). The transitive checkpoint is written directly (loading 100K spaces through the
 * door would take longer than the measurement); then edge events go onto the validated stream,
 * one at a time. The first graph of a started transitive is a whole table; each later one,
 * after one edge changed, follows the change. Reported per stream (`transitive`, `canonical`):
 * the bytes of the entry (all fields, claim-checked blobs resolved) of the first emission and
 * of one changed edge (median of a few), and the time from the event to canonical's output.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 node load/bench-wire.ts [size=100000] [--json]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { resolveBlobs } from '../pipeline/claim-check.ts';
import { deletePipelineKeys } from '../pipeline/cleanup.ts';
import { parseEntries } from '../pipeline/entry.ts';
import { keys as keysFor } from '../pipeline/keys.ts';
import { orderKey } from '../pipeline/worker.ts';
import { canonicalStore, readCurrent } from '../stages/canonical/store.ts';
import { streams } from '../stages/streams.ts';
import type { TopologyEvent } from '../stages/topology/events.ts';
import { DeltaReceiver } from '../stages/topology/graph-delta.ts';
import { checkpointKeys } from '../stages/transitive/checkpoint.ts';
import { prng } from '../test/support/prng.ts';

const OUT_DEGREE = 3;
const ROOT_DEGREE = 8;
const SAMPLES = 5;
const CHUNK = 1000;
const ATLAS = fileURLToPath(new URL('../ops/cli/atlas.ts', import.meta.url));

const args = process.argv.slice(2);
const size = Number(args.find((a) => /^\d+$/.test(a)) ?? 100_000);
const asJson = args.includes('--json');
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const rand = prng(size);
const id = () =>
  Array.from({ length: 4 }, () =>
    Math.floor(rand() * 2 ** 32)
      .toString(16)
      .padStart(8, '0'),
  ).join('');

const redis = new Redis(redisUrl);
const prefix = `bench-wire-${randomBytes(3).toString('hex')}`;
const keys = keysFor(prefix);
const spaces = Array.from({ length: size }, id);
const root = spaces[0]!;
const edges = new Set<string>();
const children: ChildProcess[] = [];

async function seedCheckpoint(): Promise<void> {
  const k = checkpointKeys(keys);
  const pipe = redis.pipeline();
  for (let i = 0; i < size; i += CHUNK)
    pipe.hset(k.topics, ...spaces.slice(i, i + CHUNK).flatMap((s) => [s, id()]));
  for (const [i, s] of spaces.entries())
    for (let d = 0; d < (i === 0 ? ROOT_DEGREE : OUT_DEGREE); d++) edges.add(`${s}|${pick()}|verified`);
  const all = [...edges];
  for (let i = 0; i < all.length; i += CHUNK) pipe.sadd(k.edges, ...all.slice(i, i + CHUNK));
  await pipe.exec();
}

function pick(): string {
  return spaces[Math.floor(rand() * spaces.length)]!;
}

function start(stage: string): void {
  const child = spawn(process.execPath, [ATLAS, 'run', stage], {
    env: {
      ...process.env,
      REDIS_URL: redisUrl,
      ATLAS_PREFIX: prefix,
      ATLAS_ROOT_SPACE_ID: root,
      ATLAS_METRICS_PORT: '0',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
}

let seq = 0;
/** A new verified edge from a reached space onto the validated stream. */
async function postEdge(): Promise<void> {
  let edge: string;
  let source: string;
  let target: string;
  do {
    source = pick();
    target = pick();
    edge = `${source}|${target}|verified`;
  } while (source === target || edges.has(edge));
  edges.add(edge);
  const event: TopologyEvent = {
    event_type: 'space.trust_extended',
    source_space_id: source,
    extension: { kind: 'verified', target_space_id: target },
    meta: { block_number: String(++seq), block_timestamp: '1', tx_hash: '0x00', cursor: `bench-${seq}` },
  };
  await redis.xadd(
    keys.stream(streams.validated),
    '*',
    'seq',
    String(seq),
    'event_id',
    `bench-${seq}`,
    'event_type',
    event.event_type,
    'event',
    JSON.stringify(event),
  );
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 600_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Bytes of the newest entry of `stream` (field names and values, blobs resolved). */
async function newestBytes(stream: string): Promise<number> {
  const raw = (await redis.callBuffer('XREVRANGE', keys.stream(stream), '+', '-', 'COUNT', 1)) as [
    Buffer,
    Buffer[],
  ][];
  const entries = parseEntries(raw);
  const failed = await resolveBlobs(redis, keys, entries);
  if (failed.size > 0) throw new Error(`unreadable blob in ${stream}`);
  let bytes = 0;
  for (const [name, value] of Object.entries(entries[0]!.toJSON())) bytes += name.length + value.length;
  return bytes;
}

/** One event in; when it changed the root's graph: both entries' bytes and the event→canonical time. */
async function emission(): Promise<{ transitive: number; canonical: number; ms: number } | null> {
  const before = await redis.xlen(keys.stream(streams.canonical));
  const t0 = performance.now();
  await postEdge();
  await waitFor('transitive', async () => {
    const next = Number((await redis.hget(orderKey(keys, 'transitive'), '')) ?? 1);
    return next > seq ? true : undefined;
  });
  const sent = Number((await redis.get(checkpointKeys(keys).outSeq)) ?? 0);
  if (sent < (transitiveOutputs ?? 0) + 1) return null;
  transitiveOutputs = sent;
  await waitFor('canonical', async () =>
    (await redis.xlen(keys.stream(streams.canonical))) > before ? true : undefined,
  );
  const ms = performance.now() - t0;
  return {
    transitive: await newestBytes(streams.transitive),
    canonical: await newestBytes(streams.canonical),
    ms,
  };
}
let transitiveOutputs: number | undefined = 0;

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Bytes of the root's current graph as the `graph` field of the whole-table wire (read from canonical's store). */
async function wholeWireBytes(): Promise<number> {
  const current = await readCurrent(redis, canonicalStore(keys), root);
  if (!current) throw new Error('canonical holds no graph of the root');
  const held = new DeltaReceiver();
  held.apply(current.graph);
  return 'graph'.length + JSON.stringify(held.wire(root)).length;
}

async function main(): Promise<void> {
  await seedCheckpoint();
  start('transitive');
  start('canonical');
  let first: Awaited<ReturnType<typeof emission>> = null;
  while (!first) first = await emission();
  const changed: NonNullable<Awaited<ReturnType<typeof emission>>>[] = [];
  for (let tries = 0; changed.length < SAMPLES && tries < 50 * SAMPLES; tries++) {
    const e = await emission();
    if (e) changed.push(e);
  }
  const result = {
    spaces: size,
    /** The same graph as the whole-table wire before deltas (`graph`: GraphWire JSON), as one entry field. */
    wholeWireField: await wholeWireBytes(),
    first: first,
    changed: {
      samples: changed.length,
      transitive: median(changed.map((e) => e.transitive)),
      canonical: median(changed.map((e) => e.canonical)),
      ms: Math.round(median(changed.map((e) => e.ms)) * 10) / 10,
    },
  };
  if (asJson) console.log(JSON.stringify(result));
  else {
    const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
    console.log(
      `bench-wire: root reaching ~all of ${size} spaces (plain), real transitive + canonical on Redis`,
    );
    console.log(
      `  the graph as the whole-table wire (field \`graph\`, GraphWire JSON, what each emission shipped before deltas): ${kb(result.wholeWireField)}`,
    );
    console.log(
      `  first emission (whole table): transitive entry ${kb(first.transitive)}, canonical entry ${kb(first.canonical)}, event→canonical ${first.ms.toFixed(0)} ms`,
    );
    console.log(
      `  one edge changed (median of ${changed.length}): transitive entry ${kb(result.changed.transitive)}, canonical entry ${kb(result.changed.canonical)}, event→canonical ${result.changed.ms} ms`,
    );
  }
}

try {
  await main();
} finally {
  for (const c of children) c.kill('SIGKILL');
  await deletePipelineKeys(redis, keys);
  redis.disconnect();
}
