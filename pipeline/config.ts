/**
 * Every setting comes from the environment (flags may override), is validated once at start,
 * and a bad one stops the process naming each bad setting (exit 2).
 */
import { z } from 'zod';
import { normalizeHex } from './hex.ts';

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const roots = z
  .string()
  .default('')
  .transform((list, ctx) => {
    const ids = list
      .split(',')
      .map((r) => r.trim())
      .filter((r) => r.length > 0);
    const normal = ids.map((id) => normalizeHex(id, 16));
    const bad = ids.filter((_, i) => normal[i] === null);
    if (bad.length > 0) ctx.addIssue({ code: 'custom', message: `not 16-byte space ids: ${bad.join(', ')}` });
    return [...new Set(normal as string[])];
  });

/** name → [schema, description]; the README's configuration table is printed from this. */
export const settings = {
  REDIS_URL: [z.string().url().default('redis://127.0.0.1:6379'), 'Redis the pipeline lives in'],
  ATLAS_PREFIX: [
    z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/)
      .default('atlas'),
    'Key prefix; keys are `{prefix}:…`',
  ],
  ATLAS_HTTP_PORT: [int(8080), 'Port of the ingest HTTP door (and /metrics)'],
  ATLAS_HTTP_HOST: [
    z.string().min(1).default('0.0.0.0'),
    'Address the HTTP door binds (127.0.0.1 keeps it local)',
  ],
  ATLAS_METRICS_PORT: [int(0), 'Port for /metrics of processes without the HTTP door (0 = none)'],
  LOG_LEVEL: [
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    'pino level',
  ],
  ATLAS_BATCH_SIZE: [int(200, 1), 'Entries a worker reads per XREADGROUP'],
  ATLAS_BLOCK_MS: [int(1000, 1), 'XREADGROUP BLOCK time; bounds how long shutdown waits for a read'],
  ATLAS_MAX_DELIVERIES: [int(5, 1), 'Deliveries after which an entry is dead-lettered as poison'],
  ATLAS_CLAIM_IDLE_MS: [
    int(30000, 100),
    'Idle time after which pending entries of a consumer are taken over',
  ],
  ATLAS_CLAIM_CHECK_BYTES: [int(64 * 1024, 1), 'Entry fields larger than this are stored as blobs'],
  ATLAS_HIGH_WATER: [
    int(100000, 1),
    'Backlog (unread + pending entries) above which readers pause and ingest answers 429',
  ],
  ATLAS_RETAIN_ENTRIES: [
    int(100000, 0),
    'Acknowledged entries kept per stream for replay; never trims unacknowledged ones',
  ],
  ATLAS_SHUTDOWN_MS: [int(10000, 100), 'Bound on a graceful stop'],
  ATLAS_DEDUP_WINDOW_S: [int(7 * 24 * 3600, 1), 'How long an accepted event_id is remembered'],
  ATLAS_MAX_BODY_BYTES: [int(4 * 1024 * 1024, 1024), 'Largest request body ingest accepts (413 above)'],
  ATLAS_MAX_BATCH_EVENTS: [int(1000, 1), 'Most envelopes in one POST /events/batch'],
  ATLAS_RESEQUENCE_BUFFER: [
    int(10000, 1),
    'Out-of-order entries an order-sensitive stage holds while it waits for a gap',
  ],
  ATLAS_LEASE_MS: [
    int(5000, 500),
    'Lease of the active instance of a stateful stage; a standby takes over after it lapses',
  ],
  ATLAS_ROOT_SPACE_ID: [roots, 'Comma-separated root space ids whose canonical graphs are maintained'],
  ATLAS_CONFLATE_MS: [
    int(0),
    'Coalesce changes of a root within this window into one emission (0 = per event)',
  ],
  KAFKA_BROKER: [z.string().default(''), 'Kafka bootstrap broker(s); empty = the Redis stream sink'],
  KAFKA_TOPIC_CANONICAL: [z.string().default('topology.canonical'), 'Kafka topic of CanonicalGraphUpdated'],
  KAFKA_TRANSACTIONAL_ID: [
    z.string().default(''),
    'transactional.id of the emit producer; empty = atlas-emit-<ATLAS_PREFIX>-<topic>',
  ],
} as const;

type Settings = typeof settings;
export type Config = { [K in keyof Settings]: z.output<Settings[K][0]> };

const schema = z
  .object(
    Object.fromEntries(Object.entries(settings).map(([k, [s]]) => [k, s])) as {
      [K in keyof Settings]: Settings[K][0];
    },
  )
  // A worker waits out its blocking read before it stops: that read must fit in the stop bound.
  .refine((c) => c.ATLAS_BLOCK_MS < c.ATLAS_SHUTDOWN_MS, {
    path: ['ATLAS_BLOCK_MS'],
    message: 'must be below ATLAS_SHUTDOWN_MS, or a graceful stop cannot finish in time',
  });

export class ConfigError extends Error {}

/** Parses settings; empty strings count as unset so `FOO= cmd` falls back to the default. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(
    Object.keys(settings).flatMap((k) => (env[k] === undefined || env[k] === '' ? [] : [[k, env[k]]])),
  );
  const result = schema.safeParse(present);
  if (result.success) return result.data as Config;
  const lines = result.error.issues.map(
    (i) => `  ${i.path.join('.')}=${present[String(i.path[0])]}: ${i.message}`,
  );
  throw new ConfigError(`invalid settings:\n${lines.join('\n')}`);
}

/** For entry points: a bad setting ends the process with one message and exit code 2. */
export function loadConfig(overrides: Record<string, string | undefined> = {}): Config {
  try {
    return parseConfig({ ...process.env, ...overrides });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`atlas: ${err.message}\n`);
    process.exit(2);
  }
}

export function settingsTable(): string {
  const rows = Object.entries(settings).map(([name, [s, doc]]) => {
    const def = s.safeParse(undefined);
    const shown = def.success ? JSON.stringify(def.data) : '';
    return `| \`${name}\` | \`${shown}\` | ${doc} |`;
  });
  return ['| setting | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
