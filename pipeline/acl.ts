/**
 * Redis ACL users for the three roles of a pipeline (one key prefix): the HTTP door, the stage
 * workers, and the operator's CLI. `atlas acl` prints them as ACL SETUSER commands.
 *
 * Redis checks every command a Lua script runs, and every key it touches, against the calling
 * user, so each role is granted the commands its scripts run as well as EVALSHA/EVAL (ioredis
 * sends EVALSHA and falls back to EVAL; SCRIPT LOAD for tools that preload).
 */
import { createHash } from 'node:crypto';
import { generationKeys } from './generation.ts';
import { type Keys, keys as keysFor } from './keys.ts';

export const roles = ['door', 'stage', 'admin'] as const;
export type Role = (typeof roles)[number];

/** The streams of the door's user (names without prefix; `*` as in a key pattern): from the stages layer. */
export interface DoorStreams {
  /** Appended to by the door (the ingest lanes). */
  writes: readonly string[];
  /** Read by the door only (the stored local events of GET /events). */
  reads: readonly string[];
}

/** What every client sends on connect (name, ready check) and for health checks. */
const CONNECTION = ['+ping', '+info', '+client|setname'];
const SCRIPTS = ['+evalsha', '+eval', '+script|load'];

/** Reads and writes of data within the prefix; -@dangerous drops FLUSHALL, KEYS, DEBUG and the like. */
const DATA = ['+@read', '+@write', '+@stream', '+@hash', '+@set', '+@string', '+@keyspace', '+@transaction'];

/**
 * door: append-idempotent.lua (GET/SET dedup keys, INCR seq, XADD ingest, SET blobs, HINCRBY
 * blob refs), the backlog watch (XINFO GROUPS, XLEN of ingest and the event lanes), the pipeline generation (joined at first
 * start: SET, SADD; checked: MGET) and the stages' heartbeats for /ready and the stored local events for GET /events (read only) — written
 * only on those keys, so it can touch neither the DLQ nor another stage's stream, nor any group.
 */
function doorRules(k: Keys, door: DoorStreams): string[] {
  const g = generationKeys(k);
  const ingest = door.writes.map((name) => k.stream(name));
  const writable = [...ingest, k.seq, k.blobRefs, k.blob('*'), k.of('dedup', '*')];
  const readable = [
    g.recovered,
    k.of('stages'),
    k.of('heartbeats'),
    k.of('heartbeat', '*'),
    ...door.reads.map((name) => k.stream(name)),
  ];
  return [
    ...[...writable, g.current, g.lineage].map((key) => `%RW~${key}`),
    ...readable.map((key) => `%R~${key}`),
    ...CONNECTION,
    ...SCRIPTS,
    '+get',
    '+set',
    '+incr',
    '+hincrby',
    '+xadd',
    '+xlen',
    '+xrange',
    '+xinfo|groups',
    '+mget',
    '+sadd',
    '+smembers',
  ];
}

/** stage: every key of the prefix (streams, groups, checkpoints, leases, blobs, DLQ appends). */
function stageRules(k: Keys): string[] {
  return [
    `~${k.of('*')}`,
    ...DATA,
    // the control queue (BullMQ keeps its jobs in lists and sorted sets under the prefix)
    '+@list',
    '+@sortedset',
    '-@dangerous',
    // destroying a group is clean-up's, the operator's; moving its position (XGROUP SETID) is a
    // replay job, which the stage runs for the operator
    '-xgroup|destroy',
    ...CONNECTION,
    ...SCRIPTS,
  ];
}

/** admin: all data commands on the prefix, group positions (replay) and DLQ purges included. */
function adminRules(k: Keys): string[] {
  return [`~${k.of('*')}`, ...DATA, '+@list', '+@sortedset', '-@dangerous', ...CONNECTION, ...SCRIPTS];
}

const rulesOf: Record<Role, (k: Keys, door: DoorStreams) => string[]> = {
  door: doorRules,
  stage: stageRules,
  admin: adminRules,
};

export function aclUserName(prefix: string, role: Role): string {
  return `${prefix}-${role}`;
}

/**
 * `ACL SETUSER` for one role. `reset` first, so running it again replaces the user as a whole;
 * the password is given as its SHA-256 (`#…`), so the output may be stored and shown.
 */
export function aclSetUser(prefix: string, role: Role, password: string, door: DoorStreams): string[] {
  const hash = createHash('sha256').update(password).digest('hex');
  return [
    'ACL',
    'SETUSER',
    aclUserName(prefix, role),
    'reset',
    'on',
    `#${hash}`,
    'resetchannels',
    ...rulesOf[role](keysFor(prefix), door),
  ];
}
