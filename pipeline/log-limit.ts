/**
 * At most one log line per kind per interval. A client library that logs every failed retry
 * (kafkajs: several lines a second while a broker is down) would otherwise drown the lines
 * that matter; the lines held back are counted and the count goes out with the next one.
 */
export class LogLimit {
  private readonly intervalMs: number;
  private readonly kinds = new Map<string, { at: number; suppressed: number }>();

  constructor(intervalMs: number) {
    this.intervalMs = intervalMs;
  }

  /** The count held back since the last line of this kind when one may go out now, else null. */
  admit(kind: string, now = Date.now()): number | null {
    const seen = this.kinds.get(kind);
    if (!seen) {
      this.kinds.set(kind, { at: now, suppressed: 0 });
      return 0;
    }
    if (now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return null;
    }
    const suppressed = seen.suppressed;
    seen.at = now;
    seen.suppressed = 0;
    return suppressed;
  }
}
