/**
 * Every setting comes from the environment (flags may override), is validated once at start,
 * and a bad one stops the process naming each bad setting (exit 2).
 */

import { existsSync } from 'node:fs';
import { z } from 'zod';
import { normalizeHex } from './hex.ts';
import { parseLaneWeights } from './lanes.ts';
import { isUrl, MASK, redactUrl, urlPasswords } from './secrets.ts';

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

const laneWeights = z
  .string()
  .default('high=8,normal=4,low=1')
  .transform((text, ctx) => {
    const weights = parseLaneWeights(text);
    if (typeof weights !== 'string') return weights;
    ctx.addIssue({ code: 'custom', message: weights });
    return z.NEVER;
  });

export interface AuthToken {
  name: string;
  /** sha256 of the token: the setting never holds a usable secret. */
  sha256: Buffer;
  /** Requests per second allowed with this token (0 = unlimited). */
  ratePerSecond: number;
}

const TOKEN_ENTRY = /^([A-Za-z0-9_.-]{1,64}):([0-9a-f]{64})(?::(\d{1,9}))?$/;
const tokens = z
  .string()
  .default('')
  .transform((list, ctx): AuthToken[] => {
    const entries = list
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t.length > 0);
    const parsed = entries.map((t) => TOKEN_ENTRY.exec(t));
    // Name the position, never the entry: a mistake could be a pasted token.
    const bad = parsed.flatMap((m, i) => (m ? [] : [i + 1]));
    if (bad.length > 0)
      ctx.addIssue({
        code: 'custom',
        message: `entries ${bad.join(', ')} are not name:sha256hex[:requestsPerSecond]`,
      });
    const out = parsed.flatMap((m) =>
      m ? [{ name: m[1]!, sha256: Buffer.from(m[2]!, 'hex'), ratePerSecond: Number(m[3] ?? 0) }] : [],
    );
    const names = out.map((t) => t.name);
    const twice = names.filter((n, i) => names.indexOf(n) !== i);
    if (twice.length > 0)
      ctx.addIssue({ code: 'custom', message: `token names used twice: ${twice.join(', ')}` });
    return out;
  });

/** 127.0.0.0/8, ::1 and localhost: the only binds that are safe without authentication. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const flag = z.stringbool().default(false);
/** `stream=entries,…` → a map; a bad pair names itself. */
const retainMap = z
  .string()
  .default('')
  .transform((list, ctx): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const pair of list.split(',').map((p) => p.trim())) {
      if (pair === '') continue;
      const m = /^([A-Za-z0-9_.-]+)=(\d{1,12})$/.exec(pair);
      if (m) out[m[1]!] = Number(m[2]);
      else ctx.addIssue({ code: 'custom', message: `not stream=entries: ${pair}` });
    }
    return out;
  });
/** A missing CA file is a setting error at start, not a connection failure later. */
const pemFile = z
  .string()
  .default('')
  .refine((file) => file === '' || existsSync(file), 'no such file');

/** Marks a setting that holds a secret (a password, or a URL that may carry one). */
const SECRET = 'secret';

/**
 * name → [schema, description, SECRET?]; the README's configuration table is printed from this.
 * The values of secret settings are never printed (`atlas config`, error messages).
 */
export const settings = {
  REDIS_URL: [
    z.string().url().default('redis://127.0.0.1:6379'),
    'Redis the pipeline lives in; `rediss://` for TLS, `redis://user:password@host:port` for an ACL user',
    SECRET,
  ],
  REDIS_TLS_CA_FILE: [
    pemFile,
    'PEM file of the CA that signed the Redis server certificate (`rediss://`); empty = the system CAs',
  ],
  ATLAS_PREFIX: [
    z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/)
      .default('atlas'),
    'Key prefix; keys are `{prefix}:…`',
  ],
  ATLAS_HTTP_PORT: [int(8080), 'Port of the ingest HTTP door (and /metrics)'],
  ATLAS_HTTP_HOST: [
    z.string().min(1).default('127.0.0.1'),
    'Address the HTTP door binds; any but a loopback address needs ATLAS_AUTH_TOKENS',
  ],
  ATLAS_GRPC_PORT: [
    int(0),
    'Port of the gRPC service `atlas.bus.Bus` (publish and subscribe), served by the ingest component; 0 = off',
  ],
  ATLAS_GRPC_HOST: [
    z.string().min(1).default('127.0.0.1'),
    'Address the gRPC service binds; any but a loopback address needs ATLAS_AUTH_TOKENS',
  ],
  ATLAS_GRPC_MAX_MESSAGE_BYTES: [
    int(1048576, 1024),
    'Largest gRPC message the service accepts (a publish above it is refused, like a body above ATLAS_MAX_BODY_BYTES)',
  ],
  ATLAS_SUBSCRIBE_MAX: [
    int(64, 1),
    'Subscribers (gRPC and SSE) one door process serves at once; more are refused',
  ],
  ATLAS_SUBSCRIBE_IN_FLIGHT: [
    int(100, 1),
    'Events a subscriber may hold unacknowledged; its delivery pauses at this many',
  ],
  ATLAS_SUBSCRIBE_REDELIVER_MS: [
    int(30000, 100),
    'An event delivered to a subscriber and not acknowledged this long goes to another member of its group',
  ],
  ATLAS_SUBSCRIBE_GROUP_TTL_S: [
    int(86400, 1),
    'A subscriber group no member has read from this long is deleted, so it stops holding the ingest stream',
  ],
  ATLAS_AUTH_TOKENS: [
    tokens,
    'Bearer tokens of the door: comma-separated `name:sha256hex[:perSecond]` (`atlas token new`); empty = none',
  ],
  ATLAS_HTTP_CONNECTION_TIMEOUT_MS: [
    int(10000, 100),
    'A door connection idle (nothing received or sent) this long is closed',
  ],
  ATLAS_HTTP_HEADERS_TIMEOUT_MS: [int(5000, 100), 'Time a client has to send all request headers'],
  ATLAS_HTTP_REQUEST_TIMEOUT_MS: [
    int(30000, 100),
    'Time a client has to send a whole request, body included (408 / closed above)',
  ],
  ATLAS_HTTP_MAX_CONNECTIONS: [
    int(1000, 1),
    'Open connections the door holds at most; further ones are closed at once',
  ],
  ATLAS_MAX_JSON_DEPTH: [int(64, 2), 'Deepest nesting of arrays and objects in a request body (400 above)'],
  ATLAS_REDIS_MEMORY_LIMIT_PERCENT: [
    z.coerce.number().int().min(1).max(100).default(80),
    'Share of Redis maxmemory (INFO memory) above which the door answers 429',
  ],
  ATLAS_REDIS_MEMORY_REFRESH_MS: [int(1000, 50), 'How often the door reads Redis memory use'],
  ATLAS_DLQ_MAX_ENTRIES: [
    int(100000, 0),
    'Dead letters kept at most; older ones are deleted, counted and logged (0 = no bound)',
  ],
  ATLAS_DLQ_MAX_AGE_S: [
    int(30 * 24 * 3600, 0),
    'Dead letters older than this are deleted, counted and logged (0 = no bound)',
  ],
  ATLAS_METRICS_PORT: [
    int(9464),
    "Every process's operator listener: /health, /ready (this process), /metrics; one port per process on a host (0 = none)",
  ],
  ATLAS_METRICS_HOST: [z.string().min(1).default('127.0.0.1'), 'Address the operator listener binds'],
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
  ATLAS_RETAIN_STREAMS: [
    retainMap,
    'Per-stream overrides of ATLAS_RETAIN_ENTRIES, as stream=entries pairs (e.g. `validated=500000,ingest=10000`)',
  ],
  ATLAS_SNAPSHOT_EVERY: [
    int(10000, 0),
    'A stateful stage snapshots its state every this many entries (0 = only on an `atlas snapshot` job)',
  ],
  ATLAS_SNAPSHOT_KEEP: [int(3, 1), 'Snapshots kept per stateful stage (the oldest go first)'],
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
  ATLAS_STALL_MS: [
    int(30000, 1000),
    'A stage instance with work waiting that commits nothing this long is stalled (error log, metric, /ready); twice as long and a singleton steps down',
  ],
  ATLAS_ROOT_SPACE_ID: [roots, 'Comma-separated root space ids whose canonical graphs are maintained'],
  ATLAS_CONFLATE_MS: [
    int(0),
    'Coalesce changes of a root within this window into one emission (0 = per event)',
  ],
  ATLAS_CHAINS: [
    z.string().default(''),
    'Stages `atlas up` runs as chains: comma-separated lists of stages joined by `+` (e.g. `validate+transitive+canonical+serialize`), passing entries in memory and committing once, without the streams between them; empty = every stage on its own, every stream kept',
  ],
  ATLAS_EMIT_MODE: [
    z.enum(['snapshot', 'diff', 'both']).default('snapshot'),
    'What each emission publishes: `snapshot` (CanonicalGraphUpdated, the whole graph), `diff` (CanonicalGraphDiff; a snapshot only when serialize holds no base tree for the root), `both` (diffs, every ATLAS_SNAPSHOT_EVERY_DIFFS-th carrying the whole tree too)',
  ],
  ATLAS_SNAPSHOT_EVERY_DIFFS: [
    int(100, 1),
    'In ATLAS_EMIT_MODE=both: a diff whose sequence_number is a multiple of this also carries the whole tree, so a consumer can start there',
  ],
  ATLAS_EVENT_TOPIC_PARTITIONS: [
    int(3, 1),
    'Partitions of a topic the publish stage creates on first use (event families: topic templates)',
  ],
  ATLAS_LANE_WEIGHTS: [
    laneWeights,
    'Weighted fair queuing of the priority lanes below critical (critical is always served first), e.g. `high=8,normal=4,low=1`',
  ],
  KAFKA_BROKER: [z.string().default(''), 'Kafka bootstrap broker(s); empty = the Redis stream sink'],
  KAFKA_TOPIC_CANONICAL: [z.string().default('topology.canonical'), 'Kafka topic of CanonicalGraphUpdated'],
  KAFKA_TLS: [flag, 'Connect to Kafka over TLS (`true` for an `SSL` or `SASL_SSL` listener)'],
  KAFKA_TLS_CA_FILE: [
    pemFile,
    'PEM file of the CA that signed the Kafka broker certificates; empty = the system CAs',
  ],
  KAFKA_SASL_MECHANISM: [
    z.enum(['', 'plain', 'scram-sha-256', 'scram-sha-512']).default(''),
    'SASL mechanism for Kafka (`scram-sha-256`, `scram-sha-512`, `plain`); empty = no SASL',
  ],
  KAFKA_SASL_USERNAME: [z.string().default(''), 'Kafka SASL user'],
  KAFKA_SASL_PASSWORD: [z.string().default(''), 'Kafka SASL password', SECRET],
  KAFKA_TOPIC_PUBLISH_PROGRESS: [
    z.string().default(''),
    'Compacted Kafka topic where each publish lane records, in the transaction of every batch, how far it has published (exactly-once across restarts); empty = atlas.publish-progress.<ATLAS_PREFIX>',
  ],
  ATLAS_FAULT_KILL_AFTER_PUBLISH: [
    int(0, 0),
    'Fault injection for tests only: a publish stage kills its own process (SIGKILL) right after its Nth Kafka commit, before the Redis commit of that step; 0 = off',
  ],
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
  })
  // Entries held on purpose (a conflation window, a blocking read) must not look like a stall.
  .refine((c) => c.ATLAS_STALL_MS > c.ATLAS_CONFLATE_MS + c.ATLAS_BLOCK_MS, {
    path: ['ATLAS_STALL_MS'],
    message: 'must be above ATLAS_CONFLATE_MS + ATLAS_BLOCK_MS, or held entries would count as a stall',
  })
  .refine((c) => !c.KAFKA_SASL_MECHANISM || (c.KAFKA_SASL_USERNAME && c.KAFKA_SASL_PASSWORD), {
    path: ['KAFKA_SASL_MECHANISM'],
    message: 'needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD',
  })
  // Security by default: a door reachable from other machines must not be open to anyone.
  .refine((c) => isLoopback(c.ATLAS_HTTP_HOST) || c.ATLAS_AUTH_TOKENS.length > 0, {
    path: ['ATLAS_HTTP_HOST'],
    message:
      'is not a loopback address and ATLAS_AUTH_TOKENS is empty: make a token with `atlas token new <name>`',
  })
  .refine((c) => isLoopback(c.ATLAS_GRPC_HOST) || c.ATLAS_AUTH_TOKENS.length > 0, {
    path: ['ATLAS_GRPC_HOST'],
    message:
      'is not a loopback address and ATLAS_AUTH_TOKENS is empty: make a token with `atlas token new <name>`',
  })
  .refine((c) => isLoopback(c.ATLAS_METRICS_HOST) || c.ATLAS_AUTH_TOKENS.length > 0, {
    path: ['ATLAS_METRICS_HOST'],
    message:
      'is not a loopback address and ATLAS_AUTH_TOKENS is empty: make a token with `atlas token new <name>`',
  })
  // node refuses a headers timeout above the request timeout.
  .refine((c) => c.ATLAS_HTTP_HEADERS_TIMEOUT_MS <= c.ATLAS_HTTP_REQUEST_TIMEOUT_MS, {
    path: ['ATLAS_HTTP_HEADERS_TIMEOUT_MS'],
    message: 'must not be above ATLAS_HTTP_REQUEST_TIMEOUT_MS',
  });

function isSecret(name: string): boolean {
  return (settings as Record<string, readonly unknown[]>)[name]?.[2] === SECRET;
}

/** A setting's value as it may be printed: URL passwords masked, other secrets masked whole. */
export function shownValue(name: string, value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  if (!isSecret(name) || text === '') return text;
  return isUrl(text) ? redactUrl(text) : MASK;
}

export class ConfigError extends Error {}

/** Parses settings; empty strings count as unset so `FOO= cmd` falls back to the default. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(
    Object.keys(settings).flatMap((k) => (env[k] === undefined || env[k] === '' ? [] : [[k, env[k]]])),
  );
  const result = schema.safeParse(present);
  if (result.success) return result.data as Config;
  const lines = result.error.issues.map((i) => {
    const name = String(i.path[0]);
    // A token list entered wrong may hold a raw token: never echo it.
    const shown = name === 'ATLAS_AUTH_TOKENS' ? '…' : shownValue(name, present[name] ?? '');
    return `  ${i.path.join('.')}=${shown}: ${i.message}`;
  });
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
    const marked = isSecret(name) ? `${doc} (secret: masked wherever printed)` : doc;
    return `| \`${name}\` | \`${isSecret(name) ? redactUrl(shown) : shown}\` | ${marked} |`;
  });
  return ['| setting | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** The secret values of a configuration (URL passwords, the SASL password), to mask in texts. */
export function secretsOf(config: Config | undefined): string[] {
  if (!config) return [];
  return Object.keys(settings)
    .filter(isSecret)
    .map((name) => String(config[name as keyof Config]))
    .flatMap((value) => (isUrl(value) ? urlPasswords(value) : [value]))
    .filter((s) => s.length > 0);
}

/** `NAME=value` per setting as this process sees it, secrets masked (`atlas config --values`). */
export function settingsValues(config: Config): string {
  return Object.keys(settings)
    .map((name) => `${name}=${shownValue(name, config[name as keyof Config])}`)
    .join('\n');
}
