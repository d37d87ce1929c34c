/**
 * Priority lanes: one stream per lane (`<stream>:critical`, `:high`, `:normal`, `:low`), each read
 * by its own worker of the same stage, so that a flood in one lane never queues in front of
 * another. In one process the lanes' handlers take turns through a LaneScheduler: a waiting
 * critical batch always goes first; the others are served by weighted fair queuing (each batch
 * costs entries/weight of virtual time; the lane whose batch would finish first goes next), so
 * that under load each lane gets its weight's share and none starves.
 */
import type { Stage, StageContext, StageFactory } from './stage.ts';

export const lanes = ['critical', 'high', 'normal', 'low'] as const;
export type Lane = (typeof lanes)[number];
export type LaneWeights = Record<Exclude<Lane, 'critical'>, number>;

export function laneStream(stream: string, lane: Lane): string {
  return `${stream}:${lane}`;
}

/** `high=8,normal=4,low=1` → weights; every weighted lane must be given, each a positive integer. */
export function parseLaneWeights(text: string): LaneWeights | string {
  const weights: Partial<LaneWeights> = {};
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, value] = part.split('=');
    const weight = Number(value);
    if (name !== 'high' && name !== 'normal' && name !== 'low')
      return `unknown lane ${name} (lanes: high, normal, low)`;
    if (!Number.isSafeInteger(weight) || weight < 1) return `weight of ${name} must be a positive integer`;
    weights[name] = weight;
  }
  for (const lane of ['high', 'normal', 'low'] as const)
    if (!weights[lane]) return `no weight for lane ${lane}`;
  return weights as LaneWeights;
}

interface Waiter {
  lane: Lane;
  finish: number;
  grant: () => void;
}

export class LaneScheduler {
  private readonly weights: LaneWeights;
  private readonly lastFinish = new Map<Lane, number>();
  private readonly waiting: Waiter[] = [];
  private virtualNow = 0;
  private busy = false;

  constructor(weights: LaneWeights) {
    this.weights = weights;
  }

  /** Waits for the lane's turn to handle a batch of `cost` entries; call the result when done. */
  async turn(lane: Lane, cost: number): Promise<() => void> {
    const start = Math.max(this.virtualNow, this.lastFinish.get(lane) ?? 0);
    const finish = lane === 'critical' ? start : start + Math.max(1, cost) / this.weights[lane];
    this.lastFinish.set(lane, finish);
    await new Promise<void>((grant) => {
      this.waiting.push({ lane, finish, grant });
      this.next();
    });
    return () => {
      this.busy = false;
      this.next();
    };
  }

  private next(): void {
    if (this.busy || this.waiting.length === 0) return;
    const critical = this.waiting.findIndex((w) => w.lane === 'critical');
    let pick = critical;
    if (pick < 0) {
      pick = 0;
      for (let i = 1; i < this.waiting.length; i++) {
        if (this.waiting[i]!.finish < this.waiting[pick]!.finish) pick = i;
      }
    }
    const [chosen] = this.waiting.splice(pick, 1);
    this.busy = true;
    if (chosen!.lane !== 'critical') this.virtualNow = Math.max(this.virtualNow, chosen!.finish);
    chosen!.grant();
  }
}

/**
 * One worker stage per lane from one stage definition: `<name>-<lane>`, reading
 * `<input>:<lane>`, its handler taking turns with the other lanes of this process.
 */
export function laneStages<N extends string>(
  name: N,
  factory: (ctx: StageContext, lane: Lane) => Stage | Promise<Stage>,
  weightsOf: (ctx: StageContext) => LaneWeights,
): Record<`${N}-${Lane}`, StageFactory> {
  let scheduler: LaneScheduler | undefined;
  const stages = {} as Record<`${N}-${Lane}`, StageFactory>;
  for (const lane of lanes) {
    stages[`${name}-${lane}`] = async (ctx) => {
      scheduler ??= new LaneScheduler(weightsOf(ctx));
      const shared = scheduler;
      const stage = await factory(ctx, lane);
      const handle = stage.handle.bind(stage);
      return {
        ...stage,
        name: `${name}-${lane}`,
        input: laneStream(stage.input, lane),
        async handle(entries, step) {
          const done = await shared.turn(lane, entries.length);
          try {
            await handle(entries, step);
          } finally {
            done();
          }
        },
      };
    };
  }
  return stages;
}
