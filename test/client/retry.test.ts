/** The producer's waits between attempts. */
import { describe, expect, it } from 'vitest';
import { retryDelayMs } from '../../clients/typescript/retry.ts';

const backoff = { baseMs: 100, maxMs: 1000 };

describe('retryDelayMs', () => {
  it('doubles the ceiling of a fully jittered wait per attempt, up to maxMs', () => {
    const top = () => 1;
    expect([1, 2, 3, 4, 5, 6].map((a) => retryDelayMs(a, null, backoff, top))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(retryDelayMs(3, null, backoff, () => 0)).toBe(0);
    expect(retryDelayMs(3, null, backoff, () => 0.5)).toBe(200);
  });

  it('waits as long as Retry-After says, in seconds or as a date, even beyond maxMs', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryDelayMs(1, '3', backoff, () => 1, now)).toBe(3000);
    expect(retryDelayMs(1, 'Thu, 01 Jan 2026 00:00:05 GMT', backoff, () => 1, now)).toBe(5000);
    expect(retryDelayMs(1, 'Wed, 31 Dec 2025 23:59:00 GMT', backoff, () => 1, now)).toBe(0);
  });

  it('falls back to the backoff when Retry-After is empty or not understood', () => {
    expect(retryDelayMs(2, '', backoff, () => 1)).toBe(200);
    expect(retryDelayMs(2, 'soon', backoff, () => 1)).toBe(200);
  });
});
