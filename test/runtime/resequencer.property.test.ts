import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { Fields } from '../../pipeline/entry.ts';
import { Resequencer } from '../../pipeline/resequencer.ts';
import { testConfig } from '../support/config.ts';
import { delay, eventually } from '../support/eventually.ts';
import { useRedis } from '../support/redis.ts';
import { relayStage } from '../support/stages.ts';
import { addEntries, drained, readAll } from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

interface Item {
  key: string;
  seq: bigint;
  copy: number;
}

/** Per key: how many items; each item arrives 1–3 times; arrival order is any interleaving. */
const scenario = fc
  .record({
    counts: fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 4 }),
    copies: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 60, maxLength: 60 }),
    capacity: fc.integer({ min: 1, max: 12 }),
  })
  .chain(({ counts, copies, capacity }) => {
    const items: Item[] = [];
    let i = 0;
    counts.forEach((n, k) => {
      for (let s = 1; s <= n; s++) {
        for (let c = 0; c < copies[i++ % copies.length]!; c++)
          items.push({ key: `k${k}`, seq: BigInt(s), copy: c });
      }
    });
    return fc.record({
      counts: fc.constant(counts),
      capacity: fc.constant(capacity),
      arrivals: fc.shuffledSubarray(items, { minLength: items.length, maxLength: items.length }),
      // After each arrival: 0 = nothing, 1 = commit (ready + consume), 2 = a failed commit (ready only).
      steps: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: items.length, maxLength: items.length }),
    });
  });

function snapshot(r: Resequencer<Item>, keys: string[]) {
  const { items, advance } = r.ready();
  return {
    size: r.size,
    next: keys.map((k) => r.next(k)),
    ready: items.map((i) => `${i.key}/${i.seq}`),
    advance: [...advance],
  };
}

describe('Resequencer (properties)', () => {
  it('emits exactly 1..n in order per key, whatever the arrival order, within its capacity', () => {
    fc.assert(
      fc.property(scenario, ({ counts, capacity, arrivals, steps }) => {
        const keys = counts.map((_, k) => `k${k}`);
        const r = new Resequencer<Item>(capacity);
        const out = new Map<string, bigint[]>(keys.map((k) => [k, []]));
        let spilled: Item[] = []; // what Redis keeps pending for us: read again later

        const offer = (item: Item): void => {
          const before = r.size;
          const next = r.next(item.key);
          const verdict = r.offer(item.key, item.seq, item);
          if (item.seq < next) expect(verdict).toBe('stale');
          if (verdict === 'spill') {
            expect(before).toBeGreaterThanOrEqual(capacity);
            expect(item.seq).not.toBe(next);
            spilled.push(item);
          }
          if (verdict === 'held') {
            expect(r.size).toBe(before + 1);
            // Over capacity only for the very item each key waits for.
            if (before >= capacity) expect(item.seq).toBe(next);
          } else {
            expect(r.size).toBe(before);
          }
          // At most one item per key beyond capacity.
          expect(r.size).toBeLessThanOrEqual(capacity + keys.length);
        };
        const commit = (): void => {
          const { items, advance } = r.ready();
          r.consume(advance);
          for (const item of items) out.get(item.key)!.push(item.seq);
          const again = spilled;
          spilled = [];
          for (const item of again) offer(item);
        };
        const failedCommit = (): void => {
          const before = snapshot(r, keys);
          r.ready(); // the commit failed: consume() is never called
          expect(snapshot(r, keys)).toEqual(before);
        };

        arrivals.forEach((item, i) => {
          offer(item);
          if (steps[i] === 1) commit();
          else if (steps[i] === 2) failedCommit();
        });
        for (let rounds = 0; rounds < 1000 && (spilled.length > 0 || r.size > 0); rounds++) commit();

        expect(spilled).toEqual([]);
        expect(r.size).toBe(0);
        counts.forEach((n, k) => {
          expect(out.get(`k${k}`)).toEqual(Array.from({ length: n }, (_, s) => BigInt(s + 1)));
          expect(r.next(`k${k}`)).toBe(BigInt(n + 1));
        });
      }),
      { numRuns: 300 },
    );
  });

  it('moves a key forward with setNext, dropping what is held below it, never backwards', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 1, max: 35 }),
        (seqs, to) => {
          const r = new Resequencer<number>(100);
          for (const s of seqs) r.offer('k', BigInt(s), s);
          r.setNext('k', BigInt(to));
          expect(r.next('k')).toBe(BigInt(Math.max(1, to)));
          expect(r.size).toBe(seqs.filter((s) => s >= to).length);
          r.setNext('k', 1n);
          expect(r.next('k')).toBe(BigInt(Math.max(1, to)));
          const { items } = r.ready();
          const expected: number[] = [];
          for (let s = Math.max(1, to); seqs.includes(s); s++) expected.push(s);
          expect(items).toEqual(expected);
        },
      ),
    );
  });

  it('answers duplicate and stale offers without holding them', () => {
    const r = new Resequencer<string>(2, 1n);
    expect(r.offer('k', 2n, 'a')).toBe('held');
    expect(r.offer('k', 2n, 'b')).toBe('duplicate');
    expect(r.peek('k', 2n)).toBe('a');
    expect(r.offer('k', 3n, 'c')).toBe('held');
    expect(r.full).toBe(true);
    expect(r.offer('k', 4n, 'd')).toBe('spill');
    expect(r.offer('k', 1n, 'e')).toBe('held'); // the awaited item always fits
    const { items, advance } = r.ready();
    expect(items).toEqual(['e', 'a', 'c']);
    r.consume(advance);
    expect(r.offer('k', 2n, 'again')).toBe('stale');
    expect(r.size).toBe(0);
  });
});

describe('an ordered stage fed out of order by two producers', () => {
  const fx = useRedis('reseq');
  afterEach(() => stopStages());

  const ordered = relayStage({ name: 'ordered', order: { seq: 'seq' } });
  const perKey = relayStage({ name: 'per-root', order: { seq: 'n', key: 'root' } });

  /** Writes the items in a shuffled order, in small groups, with pauses (a slow, jumbled producer). */
  async function produce(redis: typeof fx.redis, stream: string, items: Fields[]): Promise<void> {
    const shuffled = [...items];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    for (let i = 0; i < shuffled.length; i += 7) {
      await addEntries(redis, stream, shuffled.slice(i, i + 7));
      await delay(Math.random() * 10);
    }
  }

  it('ends dense and ordered, skip markers filling gaps, duplicates dropped, within a small buffer', async () => {
    const { prefix, keys } = fx.freshPrefix('reseq-global');
    const input = keys.stream('in');
    const output = keys.stream('out');
    const n = 300;
    const entry = (s: number): Fields =>
      s % 17 === 0 ? { seq: String(s), skip: 'invalid_payload' } : { seq: String(s), v: `v${s}` };
    await startStage(ordered, testConfig(prefix, { ATLAS_RESEQUENCE_BUFFER: 16, ATLAS_BATCH_SIZE: 10 }));

    // Two producers share each window of 30 seqs, each writing its half jumbled; some entries twice.
    const a: Fields[] = [];
    const b: Fields[] = [];
    for (let s = 1; s <= n; s++) {
      (Math.random() < 0.5 ? a : b).push(entry(s));
      if (s % 23 === 0) (Math.random() < 0.5 ? a : b).push(entry(s));
    }
    const windows = (xs: Fields[]) => {
      const out: Fields[][] = [];
      for (const x of xs) {
        const w = Math.floor((Number(x.seq) - 1) / 30);
        out[w] = [...(out[w] ?? []), x];
      }
      return out;
    };
    const run = async (xs: Fields[]) => {
      for (const w of windows(xs)) if (w) await produce(fx.redis, input, w);
    };
    await Promise.all([run(a), run(b)]);

    await eventually(() => drained(fx.redis, input, 'ordered'), 20_000);
    const out = await readAll(fx.redis, output);
    expect(out.map((e) => e.text('seq'))).toEqual(Array.from({ length: n }, (_, i) => String(i + 1)));
    for (const e of out) {
      const s = Number(e.text('seq'));
      expect(e.toJSON()).toEqual(entry(s));
    }
    expect(await fx.redis.hget(keys.of('order', 'ordered'), '')).toBe(String(n + 1));

    // Late duplicates are dropped; a restarted stage resumes from its checkpoint.
    await stopStages();
    await startStage(ordered, testConfig(prefix, { ATLAS_RESEQUENCE_BUFFER: 8 }));
    await addEntries(fx.redis, input, [entry(5), entry(n + 2), entry(n), entry(n + 1)]);
    await eventually(() => drained(fx.redis, input, 'ordered'));
    expect((await readAll(fx.redis, output)).slice(n).map((e) => e.text('seq'))).toEqual([
      String(n + 1),
      String(n + 2),
    ]);
    expect(await fx.redis.xlen(keys.dlq)).toBe(0);
  });

  it('keeps a separate dense order per key and dead-letters entries without a valid sequence', async () => {
    const { prefix, keys } = fx.freshPrefix('reseq-key');
    const input = keys.stream('in');
    const output = keys.stream('out');
    await startStage(perKey, testConfig(prefix, { ATLAS_RESEQUENCE_BUFFER: 6, ATLAS_BATCH_SIZE: 4 }));
    const items: Fields[] = [];
    for (const root of ['r1', 'r2', 'r3']) for (let s = 1; s <= 40; s++) items.push({ root, n: String(s) });
    await Promise.all([
      produce(fx.redis, input, items.slice(0, 60)),
      produce(fx.redis, input, items.slice(60)),
      addEntries(fx.redis, input, [{ root: 'r1', n: 'x' }, { n: '1' }]),
    ]);
    await eventually(() => drained(fx.redis, input, 'per-root'), 20_000);
    const out = await readAll(fx.redis, output);
    for (const root of ['r1', 'r2', 'r3']) {
      expect(out.filter((e) => e.text('root') === root).map((e) => e.text('n'))).toEqual(
        Array.from({ length: 40 }, (_, i) => String(i + 1)),
      );
    }
    const dead = await readAll(fx.redis, keys.dlq);
    expect(dead.map((d) => d.text('reason'))).toEqual(['bad_sequence', 'bad_sequence']);
  });
});
