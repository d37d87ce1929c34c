/**
 * A producer for the HTTP door: events are queued, sent in batches (POST /events/batch) one
 * request at a time so the door accepts them in the order they were sent, and retried on 429,
 * 503 and lost connections. Each event gets its event_id once, before the first attempt, so a
 * retry of an attempt that did get through is answered as a duplicate, never accepted twice.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { AtlasError, AtlasRequestError, AtlasUnavailableError, type FieldError } from './errors.ts';
import type { AtlasEvent, Envelope } from './events.ts';
import { type Backoff, retryDelayMs } from './retry.ts';

export interface ProducerOptions {
  /** The door, e.g. http://localhost:8080. */
  url: string;
  /** A bearer token, when the door has ATLAS_AUTH_TOKENS. */
  token?: string;
  /** The envelope's `source` for events that do not name one. */
  source?: string;
  /** Most events in one request; the door's ATLAS_MAX_BATCH_EVENTS (1000 by default) is the ceiling. */
  maxBatch?: number;
  /** How long a queued event waits for others before its batch goes out. */
  flushIntervalMs?: number;
  /** Attempts per batch on 429, 503 or no answer, the first included. */
  maxAttempts?: number;
  backoff?: Partial<Backoff>;
  /** Per attempt; an attempt that timed out may still have been accepted (the retry will say duplicate). */
  timeoutMs?: number;
}

/** The door's answer for one event. `duplicate`: its event_id was accepted before (seq and id are the first's). */
export interface Accepted {
  event_id: string;
  seq: number;
  id: string;
  duplicate: boolean;
}

interface Queued {
  envelope: Envelope;
  resolve(accepted: Accepted): void;
  reject(err: Error): void;
}

interface DoorError {
  error?: string;
  message?: string;
  errors?: FieldError[];
  request_id?: string;
}

const RETRIED = new Set([429, 503]);

export class AtlasProducer {
  private readonly endpoint: string;
  private readonly headers: Record<string, string>;
  private readonly source: string;
  private readonly maxBatch: number;
  private readonly flushIntervalMs: number;
  private readonly maxAttempts: number;
  private readonly backoff: Backoff;
  private readonly timeoutMs: number;
  private queue: Queued[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private closed = false;

  constructor(options: ProducerOptions) {
    this.endpoint = new URL('/events/batch', options.url).href;
    this.headers = {
      'content-type': 'application/json',
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
    };
    this.source = options.source ?? 'atlas-client';
    this.maxBatch = options.maxBatch ?? 100;
    this.flushIntervalMs = options.flushIntervalMs ?? 20;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.backoff = { baseMs: 100, maxMs: 10_000, ...options.backoff };
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Queues an event; the promise settles with the door's answer for it. */
  send(event: AtlasEvent): Promise<Accepted> {
    if (this.closed) return Promise.reject(new AtlasError('the producer is closed'));
    const envelope: Envelope = {
      event_id: event.event_id ?? randomUUID(),
      event_type: event.event_type,
      source: event.source ?? this.source,
      timestamp: event.timestamp ?? Date.now(),
      version: event.version ?? 1,
      payload: event.payload as Record<string, unknown>,
    };
    return new Promise<Accepted>((resolve, reject) => {
      this.queue.push({ envelope, resolve, reject });
      if (this.queue.length >= this.maxBatch) this.startSending();
      else this.timer ??= setTimeout(() => this.startSending(), this.flushIntervalMs);
    });
  }

  /** Sends everything queued now and waits until each event has its answer. */
  async flush(): Promise<void> {
    this.startSending();
    while (this.sending) await this.sending;
  }

  /** Flushes, then refuses further events. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private startSending(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.sending ??= this.drain().finally(() => {
      this.sending = undefined;
      // a batch filled up while the last request was settling found the drain still running
      if (this.queue.length > 0) this.startSending();
    });
  }

  /** One batch at a time, in queue order: a retried batch is never overtaken by a later one. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      await this.post(batch);
    }
  }

  private async post(batch: Queued[]): Promise<void> {
    for (let attempt = 1; batch.length > 0; attempt++) {
      let answer: Response;
      try {
        answer = await fetch(this.endpoint, {
          method: 'POST',
          headers: this.headers,
          body: JSON.stringify(batch.map((q) => q.envelope)),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        if (attempt >= this.maxAttempts)
          return rejectAll(batch, new AtlasUnavailableError(attempt, undefined, why, { cause: err }));
        await sleep(retryDelayMs(attempt, null, this.backoff));
        continue;
      }
      const body = (await answer.json().catch(() => ({}))) as DoorError & { results?: Accepted[] };
      if (answer.ok && body.results?.length === batch.length) {
        for (const [i, q] of batch.entries()) q.resolve(body.results[i]!);
        return;
      }
      if (RETRIED.has(answer.status)) {
        if (attempt >= this.maxAttempts) {
          const err = new AtlasUnavailableError(attempt, answer.status, describe(answer.status, body));
          return rejectAll(batch, err);
        }
        await sleep(retryDelayMs(attempt, answer.headers.get('retry-after'), this.backoff));
        continue;
      }
      batch = this.refuse(batch, answer.status, body);
    }
  }

  /**
   * A refused batch: the door accepts all of a batch or none of it. When it names the invalid
   * events (field errors with an index), only those fail and the rest are returned to be sent
   * again; otherwise every event of the batch fails with the same error.
   */
  private refuse(batch: Queued[], status: number, body: DoorError): Queued[] {
    const errors = body.errors ?? [];
    const code = body.error ?? 'error';
    const message = body.message ?? `HTTP ${status}`;
    const indexed =
      status === 400 &&
      errors.length > 0 &&
      errors.every((e) => e.index !== undefined && e.index < batch.length);
    if (!indexed) {
      rejectAll(batch, new AtlasRequestError(status, code, message, errors, body.request_id));
      return [];
    }
    const rest: Queued[] = [];
    batch.forEach((q, i) => {
      const own = errors.filter((e) => e.index === i).map(({ index: _, ...e }) => e);
      if (own.length === 0) rest.push(q);
      else q.reject(new AtlasRequestError(status, code, message, own, body.request_id));
    });
    return rest;
  }
}

function rejectAll(batch: Queued[], err: Error): void {
  for (const q of batch) q.reject(err);
}

function describe(status: number, body: DoorError): string {
  return `${status} ${body.error ?? 'error'}: ${body.message ?? 'no message'}`;
}
