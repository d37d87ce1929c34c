/**
 * What merging the door's requests saves, without HTTP around it: CONCURRENCY callers in this
 * process each accept one event at a time for DOOR_MERGE_S seconds, once through `Door` (the
 * callers of one event-loop turn share an append-idempotent call) and once through `accept`
 * (one call per request, as before), alternating over DOOR_MERGE_ROUNDS rounds. Prints events/s
 * and CPU µs per event of this process and of Redis (INFO cpu) — CPU time is the steadier
 * figure on a shared machine.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 node load/door-merge.ts
 *
 * Settings (environment): REDIS_URL, DOOR_MERGE_S (4), DOOR_MERGE_ROUNDS (3), DOOR_MERGE_CALLERS
 * (16). Its keys (prefix door-merge-<pid>) are deleted at the end.
 */
import { Redis } from 'ioredis';
import { Generation } from '../pipeline/generation.ts';
import { keys as keysFor } from '../pipeline/keys.ts';
import { type AcceptOptions, Acceptor, accept } from '../stages/ingest/accept.ts';
import type { Envelope } from '../stages/ingest/envelope.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SECONDS = Number(process.env.DOOR_MERGE_S ?? 4);
const ROUNDS = Number(process.env.DOOR_MERGE_ROUNDS ?? 3);
const CALLERS = Number(process.env.DOOR_MERGE_CALLERS ?? 16);

const redis = new Redis(REDIS_URL);
const prefix = `door-merge-${process.pid}`;
const keys = keysFor(prefix);
const generation = await Generation.join(redis, keys);
const opts: AcceptOptions = {
  keys,
  dedupWindowS: 600,
  claimCheckBytes: 64 * 1024,
  generation: async () => ({ key: generation.key, token: generation.id }),
};
const door = new Acceptor(redis, opts, 1000);

let n = 0;
function envelope(): Envelope {
  n++;
  return {
    event_id: `${prefix}-${n}`,
    event_type: 'space.trust_extended',
    source: 'door-merge',
    timestamp: 1732300006000,
    version: 1,
    payload: {
      source_space_id: '25000000000000000000000000000001',
      extension: { kind: 'verified', target_space_id: '6f000000000000000000000000000003' },
      meta: { block_number: 1006, block_timestamp: 1732300072, tx_hash: '0x00', cursor: `c:${n}` },
    },
  };
}

async function redisCpuS(): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return get('used_cpu_user') + get('used_cpu_sys');
}

interface Result {
  way: string;
  perS: number;
  nodeUs: number;
  redisUs: number;
}

async function run(way: 'merged' | 'one call per request'): Promise<Result> {
  const context = { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, requestId: 'door-merge' };
  const one =
    way === 'merged'
      ? () => door.accept([envelope()], context)
      : () => accept(redis, opts, [envelope()], context);
  const until = performance.now() + SECONDS * 1000;
  let events = 0;
  const cpu0 = process.cpuUsage();
  const redis0 = await redisCpuS();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (performance.now() < until) {
        await one();
        events++;
      }
    }),
  );
  const wall = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const redisS = (await redisCpuS()) - redis0;
  return {
    way,
    perS: events / wall,
    nodeUs: (cpu.user + cpu.system) / events,
    redisUs: (redisS * 1e6) / events,
  };
}

const results: Result[] = [];
for (let round = 0; round < ROUNDS; round++) {
  const order =
    round % 2 === 0
      ? (['merged', 'one call per request'] as const)
      : (['one call per request', 'merged'] as const);
  for (const way of order) results.push(await run(way));
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`door-merge: ${CALLERS} callers, ${ROUNDS} rounds of ${SECONDS} s each way; medians`);
console.log('| way | events/s | node µs/event | Redis µs/event |');
console.log('| --- | ---: | ---: | ---: |');
for (const way of ['merged', 'one call per request']) {
  const mine = results.filter((r) => r.way === way);
  console.log(
    `| ${way} | ${median(mine.map((r) => r.perS)).toFixed(0)} | ${median(mine.map((r) => r.nodeUs)).toFixed(1)} | ${median(mine.map((r) => r.redisUs)).toFixed(1)} |`,
  );
}

let cursor = '0';
do {
  const [next, found] = await redis.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000);
  if (found.length > 0) await redis.unlink(...found);
  cursor = next;
} while (cursor !== '0');
redis.disconnect();
