/**
 * A circuit breaker for a sink: after `threshold` consecutive failures it opens for `coolMs`
 * (calls fail fast; readiness and the `atlas_circuit_open` gauge report it), then lets one
 * trial call through (half-open).
 */
import { metrics } from './metrics.ts';

export class CircuitBreaker {
  private readonly stage: string;
  private readonly threshold: number;
  private readonly coolMs: number;
  private failures = 0;
  private openedAt = 0;

  constructor(stage: string, threshold = 3, coolMs = 2000) {
    this.stage = stage;
    this.threshold = threshold;
    this.coolMs = coolMs;
    metrics.circuitOpen.set({ stage }, 0);
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
    metrics.circuitOpen.set({ stage: this.stage }, 0);
  }

  failure(): void {
    this.failures++;
    if (this.failures >= this.threshold) this.openedAt = Date.now();
    metrics.circuitOpen.set({ stage: this.stage }, this.open ? 1 : 0);
  }
}
