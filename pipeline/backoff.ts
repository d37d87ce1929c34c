/** Exponential backoff with full jitter: spreads retries of many workers after an outage. */
export function backoffMs(attempt: number, baseMs = 100, capMs = 10000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
