/**
 * One active instance per stateful stage: a lease in Redis with a fencing token. A standby
 * polls until the lease lapses; the commit script refuses writes from a token that is not
 * current, so a paused or partitioned ex-holder can never write after its successor.
 */
import type { Redis } from 'ioredis';
import { sleep } from './backoff.ts';
import { duplicate } from './redis.ts';
import { runScript } from './scripts.ts';

export class Lease {
  readonly key: string;
  private readonly redis: Redis;
  private readonly ttlMs: number;
  private readonly holder: string;
  private timer: NodeJS.Timeout | undefined;
  token: string | undefined;
  /** Called once when a renewal finds the lease gone. */
  onLost: () => void = () => {};

  constructor(redis: Redis, key: string, ttlMs: number, holder: string) {
    // A connection of its own: on the worker's, a renewal would queue behind a blocking
    // XREADGROUP (up to ATLAS_BLOCK_MS) and a short lease would lapse while its holder idles.
    this.redis = duplicate(redis, 'atlas-lease');
    this.key = key;
    this.ttlMs = ttlMs;
    this.holder = holder;
  }

  /** Waits until this instance holds the lease (or `stopped()` says to give up). */
  async acquire(stopped: () => boolean): Promise<boolean> {
    while (!stopped()) {
      const token = (await runScript(
        this.redis,
        'lease-acquire',
        [this.key, `${this.key}:fence`],
        [this.ttlMs, this.holder],
      )) as string | null;
      if (token) {
        this.token = String(token);
        clearInterval(this.timer); // a renewal timer of an earlier term must not live on
        this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.ttlMs / 3)));
        return true;
      }
      await sleep(Math.max(50, Math.floor(this.ttlMs / 5)));
    }
    return false;
  }

  private async renew(): Promise<void> {
    const token = this.token;
    if (!token) return;
    try {
      const ok = await runScript(this.redis, 'lease-renew', [this.key], [token, this.ttlMs]);
      // A late answer for an earlier term must not end the current one.
      if (ok === 0 && this.token === token) this.lost();
    } catch {
      // Redis unreachable: keep trying; if the lease lapses meanwhile the fence stops our writes.
    }
  }

  private lost(): void {
    clearInterval(this.timer);
    this.token = undefined;
    this.onLost();
  }

  /** Stops renewing and gives the lease up if it is still ours; acquire() may follow. */
  async resign(): Promise<void> {
    clearInterval(this.timer);
    const token = this.token;
    this.token = undefined;
    if (token) await runScript(this.redis, 'lease-release', [this.key], [token]).catch(() => {});
  }

  /** Resigns and closes the lease's connection: call once, at the end. */
  async release(): Promise<void> {
    await this.resign();
    this.redis.disconnect();
  }

  /**
   * Whether the lease in Redis is still ours. A holder paused past its lease believes it holds it
   * until a renewal says otherwise: asked before it takes entries from other consumers.
   */
  async stillHeld(): Promise<boolean> {
    const token = this.token;
    return token !== undefined && (await this.redis.get(this.key)) === token;
  }

  async holderName(): Promise<string | null> {
    return this.redis.get(`${this.key}:holder`);
  }
}
