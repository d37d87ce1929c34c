/**
 * Redis stream sink: the output when there is no Kafka broker (development, demos, tests). One
 * entry per message with fields root, seq, value (the protobuf bytes) and traceparent. A batch is
 * one script (fenced-append.lua), so it lands whole or not at all, and only while the emit lease
 * is still ours; only a lost reply leaves the outcome unknown. The stream is never trimmed: it is
 * the record of what was published, and lastSequences() reads it.
 */
import type { Redis } from 'ioredis';
import { runScript } from '../../pipeline/scripts.ts';
import { type Fence, FencedError } from '../../pipeline/stage.ts';
import {
  GENERATION_HEADER,
  type OutMessage,
  onlyRoots,
  recordTail,
  rootsOf,
  type Sink,
  SNAPSHOT_MESSAGE_NAME,
  type Tail,
  traceparentOf,
  unpublished,
} from './sink.ts';

const PAGE = 1000;

export class RedisSink implements Sink {
  private readonly redis: Redis;
  private readonly key: string;
  private readonly lease: (() => Fence | undefined) | undefined;
  /** The newest entry when this instance last knew for sure: anything it wrote since is newer. */
  private confirmed = '0-0';
  /** A write failed: it may have landed all the same. */
  private uncertain = false;

  /**
   * `redis` stays the caller's: stop() does not close it. With `lease`, every write is fenced by
   * the lease it returns (none: this instance is not active, nothing is written).
   */
  constructor(redis: Redis, key: string, lease?: () => Fence | undefined) {
    this.redis = redis;
    this.key = key;
    this.lease = lease;
  }

  async start(): Promise<void> {
    const [newest] = await this.redis.xrevrange(this.key, '+', '-', 'COUNT', 1);
    this.confirmed = newest?.[0] ?? '0-0';
  }

  /**
   * Scans from the newest entry back, to the entry `after` (exclusive) or the start; with `roots`,
   * only until each has been seen (a root's newest entry is its highest sequence).
   */
  async lastSequences(roots?: readonly string[], after = '0-0'): Promise<Map<string, bigint>> {
    const found = new Map<string, bigint>();
    const seenAll = () => roots?.every((r) => found.has(r)) ?? false;
    let end = '+';
    for (;;) {
      const page = await this.redis.xrevrangeBuffer(this.key, end, `(${after}`, 'COUNT', PAGE);
      for (const [, fields] of page) {
        const parsed = parse(fields);
        if (parsed && parsed.tail.seq > (found.get(parsed.root) ?? -1n))
          found.set(parsed.root, parsed.tail.seq);
      }
      const oldest = page.at(-1);
      if (!oldest || page.length < PAGE || seenAll()) break;
      end = `(${oldest[0].toString()}`;
    }
    return onlyRoots(found, roots);
  }

  async tails(): Promise<Map<string, Tail>> {
    const found = new Map<string, Tail>();
    let end = '+';
    for (;;) {
      const page = await this.redis.xrevrangeBuffer(this.key, end, '-', 'COUNT', PAGE);
      for (const [, fields] of page) {
        const parsed = parse(fields);
        if (parsed) recordTail(found, parsed.root, parsed.tail);
      }
      const oldest = page.at(-1);
      if (!oldest || page.length < PAGE) return found;
      end = `(${oldest[0].toString()}`;
    }
  }

  async publish(messages: readonly OutMessage[]): Promise<void> {
    if (messages.length === 0) return;
    let batch = messages;
    if (this.uncertain) {
      batch = unpublished(messages, await this.lastSequences(rootsOf(messages), this.confirmed));
      this.uncertain = false;
    }
    if (batch.length === 0) return;
    const fence = this.fence();
    const args: (string | number | Buffer)[] = [fence.token, batch.length];
    for (const m of batch) {
      const value = Buffer.from(m.value.buffer, m.value.byteOffset, m.value.byteLength);
      const fields = ['root', m.rootId, 'seq', m.sequenceNumber.toString(), 'value', value];
      fields.push('traceparent', traceparentOf(m.traceparent));
      if (m.generation) fields.push(GENERATION_HEADER, m.generation);
      if (m.messageName && m.messageName !== SNAPSHOT_MESSAGE_NAME)
        fields.push('message-name', m.messageName);
      args.push(fields.length, ...fields);
    }
    try {
      const last = await runScript(this.redis, 'fenced-append', [this.key, fence.key], args);
      this.confirmed = String(last);
    } catch (err) {
      // Refused by the fence: nothing was written.
      if (!(err instanceof FencedError)) this.uncertain = true;
      throw err;
    }
  }

  /** The lease to check, or an unfenced write (empty token) for a sink without one. */
  private fence(): Fence {
    if (!this.lease) return { key: this.key, token: '' };
    const held = this.lease();
    if (!held) throw new FencedError('the emit lease is no longer ours: not writing');
    return held;
  }

  async stop(): Promise<void> {}
}

function fieldsOf(flat: Buffer[]): Map<string, Buffer> {
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i]!.toString(), flat[i + 1]!);
  return fields;
}

/** The root, sequence number and generation of one sink entry, or null if it is not one of ours. */
function parse(flat: Buffer[]): { root: string; tail: Tail } | null {
  const f = fieldsOf(flat);
  const seq = f.get('seq')?.toString();
  const root = f.get('root')?.toString();
  if (root === undefined || seq === undefined || !/^[0-9]{1,20}$/.test(seq)) return null;
  const generation = f.get(GENERATION_HEADER)?.toString() ?? null;
  return { root, tail: { seq: BigInt(seq), generation, value: f.get('value') ?? null } };
}
