/**
 * Collects everything one stage step writes — outputs, dead letters, checkpoint writes and the
 * acknowledgements of its inputs — and applies it as one atomic script (commit.lua).
 */
import type { Redis } from 'ioredis';
import { type Blob, checkFields, hasBlobRefs } from './claim-check.ts';
import type { Fields } from './entry.ts';
import type { Keys } from './keys.ts';
import { runScript } from './scripts.ts';
import type { Fence } from './stage.ts';

/** A dead letter of input `id`: its DLQ entry, and the field of the DLQ's counts it adds to. */
export interface DeadLetter {
  id: string;
  dlq: string;
  fields: Fields;
  counts: string;
  countField: string;
}

export type StateOp = 'HSET' | 'HSETNX' | 'HDEL' | 'HINCRBY' | 'SET' | 'DEL' | 'SADD' | 'SREM';

export class Commit {
  private readonly keys: Keys;
  private readonly threshold: number;
  private readonly blobs = new Map<string, Blob>();
  private readonly acks: string[] = [];
  private readonly appends: Array<{ key: string; flat: (string | Buffer)[] }> = [];
  private readonly ops: Array<{ op: StateOp; key: string; args: (string | Buffer)[] }> = [];
  /** Dead letters not yet written: whether each goes to the DLQ is settled just before the run. */
  private readonly deadLetters: DeadLetter[] = [];

  constructor(keys: Keys, claimCheckBytes: number) {
    this.keys = keys;
    this.threshold = claimCheckBytes;
  }

  /** One commit doing what both do, `first` before `second`. */
  static merge(first: Commit, second: Commit): Commit {
    const merged = new Commit(first.keys, first.threshold);
    for (const c of [first, second]) {
      for (const [sha, blob] of c.blobs) merged.blobs.set(sha, blob);
      merged.acks.push(...c.acks);
      merged.appends.push(...c.appends);
      merged.ops.push(...c.ops);
      merged.deadLetters.push(...c.deadLetters);
    }
    return merged;
  }

  /** Appends an entry to a stream key; large fields go through claim-check. */
  append(streamKey: string, fields: Fields): void {
    const { flat, blobs } = checkFields(fields, this.threshold);
    for (const blob of blobs) this.blobs.set(blob.sha, blob);
    this.appends.push({ key: streamKey, flat });
  }

  ack(id: string): void {
    this.acks.push(id);
  }

  write(op: StateOp, key: string, ...args: (string | Buffer)[]): void {
    this.ops.push({ op, key, args });
  }

  /**
   * A dead letter for input `id`, written by settleDeadLetters: to the DLQ (and its count), or not
   * at all when a replay re-read an input that was dead-lettered before.
   */
  deadLetter(letter: DeadLetter): void {
    this.deadLetters.push(letter);
  }

  /** The inputs of the dead letters not settled yet. */
  get deadLetterIds(): string[] {
    return this.deadLetters.map((d) => d.id);
  }

  /**
   * Writes the dead letters: to the DLQ, except those of inputs in `already` (dead-lettered before
   * a replay), which only leave the replay's set (`replayedKey`): the DLQ keeps the first one.
   */
  settleDeadLetters(already: ReadonlySet<string>, replayedKey: string): void {
    for (const d of this.deadLetters.splice(0)) {
      if (already.has(d.id)) {
        this.write('SREM', replayedKey, d.id);
        continue;
      }
      this.append(d.dlq, d.fields);
      this.write('HINCRBY', d.counts, d.countField, '1');
    }
  }

  get outputs(): number {
    return this.appends.length;
  }

  get empty(): boolean {
    return (
      this.acks.length === 0 &&
      this.appends.length === 0 &&
      this.ops.length === 0 &&
      this.deadLetters.length === 0
    );
  }

  get blobBytes(): number {
    let total = 0;
    for (const b of this.blobs.values()) total += b.bytes.length;
    return total;
  }

  /**
   * Applies the step. With a fence it fails with FencedError unless the lease is still ours; with
   * a generation, with StateLostError unless Redis still holds it. Returns the new entry ids, or
   * null when every input was acknowledged already (nothing written).
   */
  async run(
    redis: Redis,
    input: { stream: string; group: string },
    guard: { lease?: Fence | undefined; generation?: Fence | undefined } = {},
  ): Promise<string[] | null> {
    const { lease, generation } = guard;
    const keyList = [
      input.stream,
      this.keys.blobRefs,
      lease?.key ?? input.stream,
      generation?.key ?? input.stream,
    ];
    const index = (key: string): number => {
      let i = keyList.indexOf(key);
      if (i < 0) i = keyList.push(key) - 1;
      return i + 1;
    };
    const args: (string | number | Buffer)[] = [
      input.group,
      lease?.token ?? '',
      this.keys.blob(''),
      generation?.token ?? '',
    ];
    args.push(this.blobs.size);
    for (const { sha, bytes } of this.blobs.values()) args.push(sha, bytes);
    args.push(this.acks.length, ...this.acks);
    args.push(this.appends.length);
    for (const { key, flat } of this.appends)
      args.push(index(key), hasBlobRefs(flat) ? 1 : 0, flat.length, ...flat);
    args.push(this.ops.length);
    for (const { op, key, args: a } of this.ops) args.push(op, index(key), a.length, ...a);
    return (await runScript(redis, 'commit', keyList, args)) as string[] | null;
  }
}
