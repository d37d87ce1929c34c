/**
 * Progress watchdog of one worker. A worker with work waiting (unread entries, or entries
 * pending under its own name) that commits nothing for `stallMs` is stalled: something it
 * relies on did not happen (a reply lost on the way, an entry it waits for that never comes).
 * Stalled is reported at once; still stalled after another `stallMs` escalates (a singleton
 * then steps down so a standby, or its own fresh start, takes over).
 */
export type Verdict = 'ok' | 'stalled' | 'escalate';

export interface Sample {
  now: number;
  /** Entries this worker could make progress on: unread by its group plus pending under its name. */
  work: number;
  /** Not this worker's fault: paused by backpressure, a standby, or a dependency reported down. */
  excused: boolean;
}

export class ProgressWatch {
  private readonly stallMs: number;
  private lastProgress: number;
  private stalledSince: number | undefined;

  constructor(stallMs: number, now = Date.now()) {
    this.stallMs = stallMs;
    this.lastProgress = now;
  }

  /** A commit went through (or there was nothing to do). */
  progressed(now = Date.now()): void {
    this.lastProgress = now;
    this.stalledSince = undefined;
  }

  get lastProgressAt(): number {
    return this.lastProgress;
  }

  assess({ now, work, excused }: Sample): Verdict {
    if (work === 0 || excused) {
      this.progressed(now);
      return 'ok';
    }
    if (now - this.lastProgress < this.stallMs) return 'ok';
    this.stalledSince ??= now;
    return now - this.stalledSince >= this.stallMs ? 'escalate' : 'stalled';
  }
}
