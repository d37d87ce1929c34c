/**
 * A circuit breaker for a sink: after `threshold` consecutive failures it opens for `coolMs`
 * (calls fail fast, readiness reports it), then lets one trial call through (half-open).
 */
export class CircuitBreaker {
  private readonly threshold: number;
  private readonly coolMs: number;
  private failures = 0;
  private openedAt = 0;

  constructor(threshold = 3, coolMs = 2000) {
    this.threshold = threshold;
    this.coolMs = coolMs;
  }

  get open(): boolean {
    return this.failures >= this.threshold;
  }

  /** Whether a call may go out now (closed, or half-open after the cool-down). */
  allows(): boolean {
    return !this.open || Date.now() - this.openedAt >= this.coolMs;
  }

  success(): void {
    this.failures = 0;
  }

  failure(): void {
    this.failures++;
    if (this.failures >= this.threshold) this.openedAt = Date.now();
  }
}
