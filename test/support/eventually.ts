/** Polling instead of fixed sleeps: retry until a check passes or the time is up. */
import { setTimeout as delay } from 'node:timers/promises';

export { delay };

/**
 * Runs `check` until it neither throws nor returns `false`, and returns its result; after
 * `timeoutMs` the last failure is thrown (so `expect` messages come through).
 */
export async function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<Exclude<T, false>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const result = await check();
      if (result !== false) return result as Exclude<T, false>;
      last = new Error(`condition still false after ${timeoutMs} ms`);
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) throw last;
    await delay(intervalMs);
  }
}

/** Asserts that `check` keeps passing for `forMs` (e.g. "nothing more arrives"). */
export async function stays(
  check: () => void | Promise<void>,
  forMs: number,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + forMs;
  while (Date.now() < deadline) {
    await check();
    await delay(intervalMs);
  }
  await check();
}

/** Resolves as `promise` does, or rejects with `message` after `ms` (the timer is cleared). */
export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
