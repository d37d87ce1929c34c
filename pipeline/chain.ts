/**
 * Stage chaining, as Flink chains operators: several stages run as one, entries passing in
 * memory from each stage to the next, and the worker commits the whole chain's step once
 * (inputs of the first stage acknowledged, outputs of the last written, every stage's
 * checkpoints and dead letters) — so the streams between them are skipped, and a crash can never
 * separate what one stage did from what the next did with it. Generic over `Stage` objects: the
 * chain is itself a Stage to the worker.
 */
import type { Redis } from 'ioredis';
import { carried, skipMarker } from './carried.ts';
import { Entry, type Fields } from './entry.ts';
import type { Keys } from './keys.ts';
import { entryLog, type Logger } from './log.ts';
import { metrics } from './metrics.ts';
import { type Activation, OrderGapError, type Stage, type Step } from './stage.ts';
import { deadLetterFields, describe } from './worker.ts';

/** A chain that cannot be built as asked (a deployment error, found before anything runs). */
export class ChainConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChainConfigError';
  }
}

/**
 * An in-memory entry came out of order inside a chain (a gap in the `seq` its stage declares):
 * the chain's inputs were handed over out of stream order (entries pending under another
 * instance, or ours not read again yet). The worker writes nothing of the step and reads again
 * in stream order (see `OrderGapError`); a gap that never fills stalls the chain, loudly.
 */
export class ChainOrderError extends OrderGapError {
  constructor(message: string) {
    super(message);
    this.name = 'ChainOrderError';
  }
}

/**
 * A stream between two chained stages still holds entries the later stage has not consumed: the
 * chain would skip them. Run the stages unchained until `atlas streams` shows them drained.
 */
export class ChainBacklogError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChainBacklogError';
  }
}

/** Where the order of one chained ordered stage stands, per key (the runtime's order checkpoint). */
type Order = Map<string, bigint>;

export function chain(stages: Stage[], redis: Redis, keys: Keys, log: Logger): Stage {
  check(stages);
  const first = stages[0]!;
  const last = stages[stages.length - 1]!;
  const name = stages.map((s) => s.name).join('+');
  const orders = new Map<Stage, Order>();
  let counter = 0;

  const orderKey = (s: Stage) => keys.of('order', s.name);

  async function loadOrders(): Promise<void> {
    for (const s of stages.slice(1)) {
      if (!s.order) continue;
      const saved = await redis.hgetall(orderKey(s));
      orders.set(s, new Map(Object.entries(saved).map(([k, v]) => [k, BigInt(v)])));
    }
  }

  /** Inner inputs in the order their stage declares: stale ones dropped, a gap refused (the step is read again). */
  function inOrder(s: Stage, entries: Entry[], step: Step): Entry[] {
    const spec = s.order;
    const order = orders.get(s);
    if (!spec || !order) return entries;
    const passed: Entry[] = [];
    const moved = new Set<string>();
    for (const entry of entries) {
      const key = spec.key ? entry.optionalText(spec.key) : '';
      const raw = entry.optionalText(spec.seq);
      if (key === undefined || raw === undefined || !/^\d+$/.test(raw)) {
        // No place in the order to keep: dead-lettered without a marker, as the runtime does.
        deadLetter(s, entry, 'bad_sequence', `no valid ${spec.seq}${spec.key ? `/${spec.key}` : ''}`, step);
        continue;
      }
      const seq = BigInt(raw);
      const next = order.get(key);
      if (next !== undefined && seq < next) {
        metrics.duplicates.inc({ stage: s.name });
        continue;
      }
      if (next !== undefined && seq > next)
        throw new ChainOrderError(
          `chain ${name}: stage ${s.name} expected ${spec.seq} ${next}${key ? ` of ${key}` : ''}, got ${seq}`,
        );
      order.set(key, seq + 1n);
      moved.add(key);
      passed.push(entry);
    }
    for (const key of moved) step.write('HSET', orderKey(s), key, order.get(key)!.toString());
    return passed;
  }

  /** An inner stage's dead letter: to the DLQ under its own name, its skip marker on to the next. */
  function deadLetter(s: Stage, entry: Entry, reason: string, error: unknown, step: Step): void {
    step.send(deadLetterFields(s.name, keys.stream(s.input), entry, reason, error), 'dlq');
    step.write('HINCRBY', keys.dlqCounts, `${s.name}|${reason}`, '1');
    metrics.deadLettered.inc({ stage: s.name, reason });
    log.warn({ stage: s.name, ...entryLog(entry), reason, error: describe(error) }, 'dead-lettered');
  }

  function memoryEntry(fields: Fields): Entry {
    const map = new Map<string, Buffer>();
    for (const [k, v] of Object.entries(fields)) map.set(k, typeof v === 'string' ? Buffer.from(v) : v);
    // Not a stream id: it never was in a stream. Unique within the process, for logs.
    return new Entry(`chained-${++counter}`, map);
  }

  /**
   * What stage `i` does goes to the chain's step, except its outputs on its own stream (and the
   * skip markers of its dead letters): `pass` hands those on — to the next stage in memory, or,
   * from the last stage, to the chain's output stream. The first stage's acks and dead letters
   * are the chain's own; an in-memory input must be done within the step (checked after).
   */
  function innerStep(i: number, step: Step, pass: (fields: Fields) => void, open: Set<Entry>): Step {
    const s = stages[i]!;
    const send = (fields: Fields, stream?: string) => {
      if (stream === undefined || stream === s.output) pass(fields);
      else step.send(fields, stream);
    };
    return {
      send,
      // Carried here: a pass to the next stage in memory must hold them as a stream entry would.
      sendFor: (input, fields, stream) => send(carried(input, fields), stream),
      ack: (entry) => {
        if (i > 0) open.delete(entry);
        else step.ack(entry);
      },
      deadLetter: (entry, reason, error) => {
        // The chain's own input: the worker's dead letter (the DLQ entry and the ack).
        if (i === 0) step.deadLetter(entry, reason, error);
        else {
          open.delete(entry);
          deadLetter(s, entry, reason, error, step);
        }
        const marker = skipMarker(s, entry, reason);
        if (marker) pass(marker);
      },
      write: (op, key, ...args) => step.write(op, key, ...args),
    };
  }

  function passer(i: number, step: Step, out: Entry[]): (fields: Fields) => void {
    if (i === stages.length - 1) return (fields) => step.send(fields);
    return (fields) => out.push(memoryEntry(fields));
  }

  /** Runs `entries` through stages `from`.. of the chain. */
  async function runFrom(from: number, entries: Entry[], step: Step): Promise<void> {
    let inputs = entries;
    for (let i = from; i < stages.length && inputs.length > 0; i++) {
      const s = stages[i]!;
      if (i > 0) inputs = inOrder(s, inputs, step);
      const out: Entry[] = [];
      const open = new Set(i > 0 ? inputs : []);
      if (inputs.length > 0) await s.handle(inputs, innerStep(i, step, passer(i, step, out), open));
      if (open.size > 0)
        throw new ChainConfigError(
          `chain ${name}: stage ${s.name} left ${open.size} input(s) pending across steps; it cannot run after another stage in a chain`,
        );
      inputs = out;
    }
  }

  const ticking = first.tick;
  return {
    name,
    group: first.name,
    parts: stages.map((s) => s.name),
    input: first.input,
    ...(last.output ? { output: last.output } : {}),
    outputs: stages.flatMap((s) => s.outputs ?? []),
    ...(first.order ? { order: first.order } : {}),
    ...(stages.some((s) => s.singleton) ? { singleton: true } : {}),
    async activate(activation: Activation) {
      await refuseBacklog(stages, redis, keys);
      let firstOrder: Map<string, bigint> | undefined;
      for (const [i, s] of stages.entries()) {
        const moved = await s.activate?.(activation);
        if (i === 0) firstOrder = moved;
        else if (moved && s.order) for (const [k, n] of moved) orders.get(s)?.set(k, n);
        if (i === 0) await loadOrders();
      }
      return firstOrder;
    },
    async reset() {
      for (const s of stages) await s.reset?.();
      await loadOrders();
    },
    handle: (entries, step) => runFrom(0, entries, step),
    async skipped(entry, reason, step) {
      const marker = skipMarker(first, entry, reason);
      if (marker) await runFrom(1, [memoryEntry(marker)], step);
    },
    ...(ticking
      ? {
          tick: {
            everyMs: ticking.everyMs,
            async run(step: Step) {
              const out: Entry[] = [];
              await ticking.run(innerStep(0, step, passer(0, step, out), new Set()));
              await runFrom(1, out, step);
            },
          },
        }
      : {}),
    notReady() {
      for (const s of stages) {
        const why = s.notReady?.();
        if (why) return `${s.name}: ${why}`;
      }
      return null;
    },
    async stop() {
      for (const s of stages) await s.stop?.();
    },
  };
}

/** A chain is a line: each stage reads what the one before writes; only the first may hold inputs. */
function check(stages: Stage[]): void {
  if (stages.length < 2) throw new ChainConfigError('a chain needs at least two stages');
  for (const [i, s] of stages.entries()) {
    if (s.skipped) throw new ChainConfigError(`stage ${s.name} is a chain already`);
    if (i === 0) continue;
    const before = stages[i - 1]!;
    if (before.output !== s.input)
      throw new ChainConfigError(
        `cannot chain ${before.name} (writes ${before.output ?? 'nothing'}) to ${s.name} (reads ${s.input})`,
      );
    // A timer-driven stage holds inputs across steps (a conflation window): chained after another
    // stage, those inputs exist only in memory and a crash would lose them.
    if (s.tick)
      throw new ChainConfigError(
        `stage ${s.name} holds inputs across steps (it has a timer, e.g. a conflation window): it can only be first in a chain`,
      );
  }
}

/**
 * The streams inside a chain must be drained before it starts: their entries would be skipped.
 * Loud (the process stops with this error) rather than silently passing over accepted events.
 */
async function refuseBacklog(stages: Stage[], redis: Redis, keys: Keys): Promise<void> {
  for (const s of stages.slice(1)) {
    const stream = keys.stream(s.input);
    const groups = (await redis.xinfo('GROUPS', stream).catch(() => [])) as unknown[][];
    for (const flat of groups) {
      if (String(flat[flat.indexOf('name') + 1]) !== s.name) continue;
      const pending = Number(flat[flat.indexOf('pending') + 1]);
      const lag = Number(flat[flat.indexOf('lag') + 1] ?? 0);
      if (pending + lag > 0)
        throw new ChainBacklogError(
          `${stream} holds ${pending + lag} entries stage ${s.name} has not consumed; a chain would skip them: run the stages unchained until they are drained`,
        );
    }
  }
}
