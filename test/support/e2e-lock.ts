/**
 * A lock on the shared Kafka broker across test processes (vitest workers, separate vitest runs,
 * the e2e bench): tests that use the broker hold it shared, a test that stops the broker holds it
 * exclusively, so it never takes the broker away under another e2e test. It is flock(1) on a file
 * under .run/, held by a small child process: `flock` waits for the lock, prints a line, and
 * keeps it for as long as its stdin is open — closing stdin releases it, and so does the death
 * of the test process (the pipe closes), so a crashed run never leaves the lock behind.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { deleteTopics, KAFKA_BROKER, uniqueTopic } from './e2e-kafka.ts';
import { kafkaDown, kafkaService, kafkaUp } from './e2e-services.ts';
import { killChildren, ROOT } from './processes.ts';

const RUN_DIR = process.env.ATLAS_RUN_DIR ?? join(ROOT, '.run');

/** The lock of the broker on a port (the shared test broker's by default). */
export function brokerLockFile(port = Number(KAFKA_BROKER.split(',')[0]!.split(':').at(-1))): string {
  return join(RUN_DIR, `.lock-e2e-kafka-${port}`);
}

export interface HeldLock {
  release(): Promise<void>;
}

export async function lockBroker(
  mode: 'shared' | 'exclusive',
  file = brokerLockFile(),
  timeoutMs = 600_000,
): Promise<HeldLock> {
  mkdirSync(join(file, '..'), { recursive: true });
  const proc = spawn(
    'flock',
    [
      mode === 'shared' ? '--shared' : '--exclusive',
      '--timeout',
      String(Math.ceil(timeoutMs / 1000)),
      file,
      '-c',
      'echo locked; exec cat >/dev/null',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('locked')) resolve();
    });
    proc.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`flock ${file} exited ${code} without the lock: ${err}`)));
  });
  return {
    release: async () => {
      proc.stdin.end();
      await exited;
    },
  };
}

/**
 * For an e2e file on the shared broker: holds the broker lock shared for the file, and at its end
 * kills the processes it started and deletes its topic. Returns the topic's name (`tag` in it).
 */
export function useSharedBroker(tag: string): string {
  const topic = uniqueTopic(tag);
  let lock: HeldLock | undefined;
  beforeAll(async () => {
    lock = await lockBroker('shared');
  }, 620_000);
  afterAll(async () => {
    await killChildren();
    await deleteTopics([topic]).catch(() => undefined);
    await lock?.release();
  }, 60_000);
  return topic;
}

/**
 * For an e2e file that stops a broker: by default a broker of its own (ops/services on
 * ATLAS_E2E_OUTAGE_KAFKA_PORT, default 29092), so stopping it disturbs no other test; with
 * ATLAS_E2E_OUTAGE_BROKER=shared the shared one, held exclusively meanwhile. The broker is up
 * before the file's tests and brought up again after them (also when they fail), the topic is
 * deleted, and a broker of its own is stopped again unless it was up before.
 */
export function useOutageBroker(tag: string): { port: number; broker: string; topic: string } {
  const shared = process.env.ATLAS_E2E_OUTAGE_BROKER === 'shared';
  const port = shared
    ? Number(KAFKA_BROKER.split(',')[0]!.split(':').at(-1))
    : Number(process.env.ATLAS_E2E_OUTAGE_KAFKA_PORT ?? 29092);
  const broker = `127.0.0.1:${port}`;
  const topic = uniqueTopic(tag);
  let lock: HeldLock | undefined;
  let wasUp = false;
  beforeAll(async () => {
    lock = await lockBroker('exclusive', brokerLockFile(port));
    wasUp = (await kafkaService('status', port)).code === 0;
    await kafkaUp(port);
  }, 800_000);
  afterAll(async () => {
    await killChildren();
    try {
      await kafkaUp(port);
      await deleteTopics([topic], broker).catch(() => undefined);
      if (!shared && !wasUp) await kafkaDown(port);
    } finally {
      await lock?.release();
    }
  }, 300_000);
  return { port, broker, topic };
}
