/**
 * The stage runtime's cost in Redis: runs `bench:e2e` (one process, `atlas up`) once per layout
 * — every stage on its own, then ATLAS_CHAINS — and reads `INFO stats` and `INFO commandstats`
 * around each run, so each layout's latency table comes with, per event:
 * - round trips: `total_reads_processed`, the reads Redis made from client sockets — one per
 *   request the clients wrote (a pipeline written at once is one);
 * - commands, those run inside scripts included, and the most frequent ones.
 * Everything on that Redis counts (door, stages, housekeeping, the bench's set-up and clean-up),
 * so run it on a Redis of its own. The mix is a 3 s warm-up at 200 ev/s, 8 s at 100 ev/s and
 * 8 s at each rate of BENCH_RATES (single POSTs: the door's one script call per event included).
 *
 *   REDIS_URL=… KAFKA_BROKER=… BENCH_RATES=1000 node load/bench-runtime.ts
 *   BENCH_LAYOUTS=chained node load/bench-runtime.ts
 *
 * Settings: BENCH_LAYOUTS (unchained,chained), BENCH_CHAIN (validate+transitive+canonical+serialize),
 * and those of bench:e2e (BENCH_RATES, BENCH_STEP_S, REDIS_URL, KAFKA_BROKER).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const LAYOUTS = (process.env.BENCH_LAYOUTS ?? 'unchained,chained').split(',');
const CHAIN = process.env.BENCH_CHAIN ?? 'validate+transitive+canonical+serialize';
const WARM_UP_EVENTS = 600;

type Stats = Map<string, number>;

async function commandStats(redis: Redis): Promise<Stats> {
  const text = await redis.info('commandstats');
  const out: Stats = new Map();
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  const reads = /^total_reads_processed:(\d+)/m.exec(await redis.info('stats'));
  out.set('(reads)', Number(reads?.[1] ?? 0));
  return out;
}

/** Runs bench:e2e with `env` and returns its output and the events its rows report (+ warm-up). */
function benchE2e(env: Record<string, string>): Promise<{ output: string; events: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'bench-e2e.ts')], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      process.stdout.write(d);
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`bench:e2e exited with ${code}`));
      // Rows of the steps as measured (printed indented, once each).
      const rows = output.split('\n').filter((l) => l.startsWith('  | '));
      const events = rows.reduce((sum, r) => sum + Number(r.split('|')[4]!.trim()), 0);
      resolve({
        output,
        events: events + WARM_UP_EVENTS * (1 + rows.filter((r) => !r.includes(' holds')).length),
      });
    });
  });
}

const redis = new Redis(REDIS_URL);
const summary: string[] = [];
try {
  for (const layout of LAYOUTS) {
    console.log(`\n=== ${layout}${layout === 'chained' ? ` (ATLAS_CHAINS=${CHAIN})` : ''}`);
    const before = await commandStats(redis);
    const { events } = await benchE2e({
      BENCH_MODES: layout === 'chained' ? 'chained' : 'up',
      BENCH_CHAIN: CHAIN,
    });
    const after = await commandStats(redis);
    const delta = [...after]
      .map(([cmd, n]) => [cmd, n - (before.get(cmd) ?? 0)] as const)
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1]);
    const reads = delta.find(([cmd]) => cmd === '(reads)')?.[1] ?? 0;
    const commands = delta.filter(([cmd]) => cmd !== '(reads)');
    const total = commands.reduce((s, [, n]) => s + n, 0);
    const top = commands
      .slice(0, 8)
      .map(([cmd, n]) => `${cmd} ${(n / events).toFixed(2)}`)
      .join(', ');
    summary.push(
      `${layout}: ${(reads / events).toFixed(2)} round trips and ${(total / events).toFixed(2)} commands per event (${events} events; ${top})`,
    );
  }
} finally {
  redis.disconnect();
}
console.log(`\n${summary.join('\n')}`);
