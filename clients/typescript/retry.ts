/** When to try again: the door's Retry-After when it says, else exponential backoff with full jitter. */

export interface Backoff {
  /** The first retry waits up to this long; each further one up to twice as long as the last. */
  baseMs: number;
  /** No wait of our own choice is longer. */
  maxMs: number;
}

/**
 * The wait before attempt `attempt + 1`. Retry-After (seconds or an HTTP date) is honoured as
 * given, even above maxMs: the door knows when it can take more. Jitter spreads producers
 * that were refused together so they do not come back together.
 */
export function retryDelayMs(
  attempt: number,
  retryAfter: string | null,
  backoff: Backoff,
  random: () => number = Math.random,
  now: number = Date.now(),
): number {
  const told = parseRetryAfter(retryAfter, now);
  if (told !== null) return told;
  return Math.round(random() * Math.min(backoff.maxMs, backoff.baseMs * 2 ** (attempt - 1)));
}

function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
