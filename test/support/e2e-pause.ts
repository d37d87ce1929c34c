/**
 * Pausing the active instance of a singleton stage past its lease (SIGSTOP: a long GC pause, a
 * frozen VM) while a hot standby takes over, then thawing it (SIGCONT); posting events at a
 * steady pace meanwhile; and counting what would break exactly-once in the topic.
 */
import { type RootStream, sequenceNumbers } from './e2e-kafka.ts';
import type { Envelope } from './events.ts';
import { delay, eventually } from './eventually.ts';
import type { Child } from './processes.ts';

/** Processes of a pipeline with singleton stages (E2EPipeline, GraphPipeline). */
export interface Singletons {
  leaseHolder(stage: string): Promise<string | null>;
  child(name: string): Child;
}

export interface Pause {
  /** The process frozen. */
  paused: string;
  /** The standby that held the lease when the frozen one was thawed. */
  successor: string;
  /** How long it stayed frozen. */
  ms: number;
}

/**
 * Freezes the lease holder of `stage`, keeps it frozen until another process holds the lease (at
 * least `minMs`) and `whilePaused()` is done (e.g. until the successor has done work), then thaws
 * it. The frozen process keeps whatever it had read in memory: that is what the fence must stop.
 */
export async function pausePastLease(
  p: Singletons,
  stage: string,
  opts: { minMs: number; whilePaused?: () => Promise<unknown>; timeoutMs?: number },
): Promise<Pause> {
  const paused = await eventually(async () => {
    const name = await p.leaseHolder(stage);
    if (!name) throw new Error(`no process holds the ${stage} lease`);
    return name;
  }, opts.timeoutMs ?? 30_000);
  const child = p.child(paused);
  const started = performance.now();
  child.pause();
  try {
    await delay(opts.minMs);
    const successor = await eventually(
      async () => {
        const name = await p.leaseHolder(stage);
        if (!name || name === paused) throw new Error(`the ${stage} lease has not passed on from ${paused}`);
        return name;
      },
      opts.timeoutMs ?? 30_000,
      50,
    );
    await opts.whilePaused?.();
    return { paused, successor, ms: performance.now() - started };
  } finally {
    child.resume();
  }
}

/**
 * `times` pauses of the stage's lease holder past its lease (`leaseMs`), each while it works
 * (`progress()`, a count of its outputs, just grew), each held until the successor's outputs
 * grew too (then both hold the same entries), then a second for the thawed one to wake up.
 */
export async function pauseRepeatedly(
  p: Singletons,
  stage: string,
  opts: { times: number; leaseMs: number; progress: () => Promise<number>; rand: () => number },
): Promise<Pause[]> {
  // Generous: a takeover reads the topic back, and a read-back that stalls is retried only after
  // 30 s without progress (KafkaSink readStallMs).
  const grown = (from: number) => eventually(async () => (await opts.progress()) > from, 60_000, 10);
  const pauses: Pause[] = [];
  for (let i = 0; i < opts.times; i++) {
    await grown(await opts.progress());
    await delay(Math.floor(opts.rand() * 100)); // some moment of its work
    const atPause = await opts.progress();
    pauses.push(
      await pausePastLease(p, stage, { minMs: opts.leaseMs + 300, whilePaused: () => grown(atPause) }),
    );
    await delay(1000);
  }
  return pauses;
}

/** Posts events one request at a time at `perSecond`, until stopped or out of events. */
export function postSteadily(
  post: (event: Envelope) => Promise<void>,
  events: Envelope[],
  perSecond: number,
): { posted(): number; stop(): Promise<void> } {
  let posted = 0;
  let stopped = false;
  const done = (async () => {
    const started = performance.now();
    while (!stopped && posted < events.length) {
      const due = started + (posted * 1000) / perSecond;
      if (due > performance.now()) await delay(due - performance.now());
      await post(events[posted]!);
      posted++;
    }
  })();
  return {
    posted: () => posted,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

/**
 * What breaks exactly-once in each root's stream, in publication order: a sequence number seen
 * before (duplicate) and one lower than the highest before it (out of order; duplicates count
 * here too when they come late).
 */
export function sequenceFaults(perRoot: Map<string, RootStream>): { duplicates: number; outOfOrder: number } {
  let duplicates = 0;
  let outOfOrder = 0;
  for (const stream of perRoot.values()) {
    const seen = new Set<number>();
    let highest = 0;
    for (const n of sequenceNumbers(stream)) {
      if (seen.has(n)) duplicates++;
      if (n < highest) outOfOrder++;
      seen.add(n);
      highest = Math.max(highest, n);
    }
  }
  return { duplicates, outOfOrder };
}

/** Why the named processes stepped down as fenced (pipeline/worker.ts logs each time), in order. */
export function fencings(p: Singletons, names: string[]): string[] {
  return names.flatMap((name) =>
    p
      .child(name)
      .logsMatching(/^fenced off/)
      .map((line) => `${name}: ${String(line.err)}`),
  );
}
