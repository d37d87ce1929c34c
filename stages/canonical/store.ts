/**
 * What the canonical stage remembers per root: the last *emitted* update (its hash, sequence
 * number and the last event it included), and the graph it holds as transitive's deltas left it
 * — a table of distinct subtrees by hash (`canonical:table:<root>`), the canonical ids
 * (`canonical:ids:<root>`) and hash, size and meta (`canonical:held`). Each delta is written as
 * what it changes (HSET of the subtrees that entered, SADD/SREM of the ids) in the step that
 * acknowledges it, so the store and the consumed input never disagree, and an emission costs
 * what changed, not the graph.
 *
 * Subtrees that left the graph are not deleted one by one (the sender does not name them): they
 * stay as garbage that loading ignores (it walks from the root hash), and the table is written
 * whole again once the garbage outgrows the live part, so it stays under twice the graph.
 */
import type { Redis } from 'ioredis';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { type Entry, parseEntries } from '../../pipeline/entry.ts';
import type { Keys } from '../../pipeline/keys.ts';
import type { Step } from '../../pipeline/stage.ts';
import { streams } from '../streams.ts';
import { type DeltaNode, type GraphDelta, type GraphHead, wholeFromTable } from '../topology/graph-delta.ts';

export interface Emitted {
  hash: string;
  sequence_number: number;
  event_seq: number;
}

export interface CanonicalStore {
  roots: string;
  held: string;
  table(root: string): string;
  ids(root: string): string;
}

export function canonicalStore(keys: Keys): CanonicalStore {
  return {
    roots: keys.of('canonical', 'roots'),
    held: keys.of('canonical', 'held'),
    table: (root) => keys.of('canonical', 'table', root),
    ids: (root) => keys.of('canonical', 'ids', root),
  };
}

/** Fields per HSET/SADD: the commit script passes each op's arguments through Lua's unpack. */
const CHUNK = 1000;

export async function loadEmitted(redis: Redis, store: CanonicalStore): Promise<Map<string, Emitted>> {
  const all = await redis.hgetall(store.roots);
  return new Map(Object.entries(all).map(([root, json]) => [root, JSON.parse(json) as Emitted]));
}

/** Records an emission in the same atomic step as the output entry. */
export function recordEmission(step: Step, store: CanonicalStore, root: string, emitted: Emitted): void {
  step.write('HSET', store.roots, root, JSON.stringify(emitted));
}

/** Subtrees written to a root's table since it was last written whole, and how many were live then. */
export interface TableSize {
  written: number;
  live: number;
}

/**
 * Writes what `delta` changes in the held graph, in the step that acknowledges it. Returns the
 * table's size afterwards; a whole table (or garbage grown past the live part: `whole` is then
 * the graph now held, as a whole table) replaces what was there.
 */
export function recordDelta(
  step: Step,
  store: CanonicalStore,
  delta: GraphDelta,
  head: GraphHead,
  size: TableSize,
  whole: () => GraphDelta,
): TableSize {
  const root = delta.root_id;
  step.write('HSET', store.held, root, JSON.stringify(head));
  if (delta.base === '') return writeWhole(step, store, delta);
  const written = size.written + delta.nodes.length;
  if (written - size.live > Math.max(size.live, CHUNK)) return writeWhole(step, store, whole());
  writeNodes(step, store.table(root), delta.nodes);
  for (let i = 0; i < delta.ids_added.length; i += CHUNK)
    step.write('SADD', store.ids(root), ...delta.ids_added.slice(i, i + CHUNK));
  for (let i = 0; i < delta.ids_removed.length; i += CHUNK)
    step.write('SREM', store.ids(root), ...delta.ids_removed.slice(i, i + CHUNK));
  return { written, live: size.live };
}

function writeWhole(step: Step, store: CanonicalStore, whole: GraphDelta): TableSize {
  const root = whole.root_id;
  step.write('DEL', store.table(root));
  step.write('DEL', store.ids(root));
  writeNodes(step, store.table(root), whole.nodes);
  for (let i = 0; i < whole.ids_added.length; i += CHUNK)
    step.write('SADD', store.ids(root), ...whole.ids_added.slice(i, i + CHUNK));
  return { written: whole.nodes.length, live: whole.nodes.length };
}

function writeNodes(step: Step, key: string, nodes: readonly DeltaNode[]): void {
  for (let i = 0; i < nodes.length; i += CHUNK) {
    const args: string[] = [];
    for (const node of nodes.slice(i, i + CHUNK)) args.push(node[0], JSON.stringify(node));
    step.write('HSET', key, ...args);
  }
}

/** A root's held graph as stored, as a whole table; undefined when none is stored. */
export interface StoredTable {
  delta: GraphDelta;
  size: TableSize;
}

/**
 * Every root's held graph as stored. A root whose table is damaged (a subtree missing) is left
 * out and reported to `damaged`: the stage then holds nothing for it and asks for a whole table.
 */
export async function loadTables(
  redis: Redis,
  store: CanonicalStore,
  damaged: (root: string, err: Error) => void,
): Promise<Map<string, StoredTable>> {
  const heads = await redis.hgetall(store.held);
  const out = new Map<string, StoredTable>();
  for (const [root, json] of Object.entries(heads)) {
    const replies = await redis.multi().hgetall(store.table(root)).smembers(store.ids(root)).exec();
    const [nodes, ids] = results(replies) as [Record<string, string>, string[]];
    const table = parseTable(nodes);
    try {
      const delta = wholeFromTable(root, JSON.parse(json) as GraphHead, table, ids);
      out.set(root, { delta, size: { written: table.size, live: delta.nodes.length } });
    } catch (err) {
      damaged(root, err as Error);
    }
  }
  return out;
}

function parseTable(fields: Record<string, string>): Map<string, DeltaNode> {
  return new Map(Object.entries(fields).map(([hash, json]) => [hash, JSON.parse(json) as DeltaNode]));
}

function results(replies: [Error | null, unknown][] | null): unknown[] {
  return (replies ?? []).map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

/**
 * The last emitted update of `root` and the graph held for it (`atlas canonical show`); read in
 * one MULTI, so a commit cannot fall between the number and the graph. undefined when nothing
 * was emitted or no graph is held.
 */
export async function readCurrent(
  redis: Redis,
  store: CanonicalStore,
  root: string,
): Promise<{ emitted: Emitted; graph: GraphDelta } | undefined> {
  const replies = await redis
    .multi()
    .hget(store.roots, root)
    .hget(store.held, root)
    .hgetall(store.table(root))
    .smembers(store.ids(root))
    .exec();
  const [emitted, head, nodes, ids] = results(replies) as [
    string | null,
    string | null,
    Record<string, string>,
    string[],
  ];
  if (!emitted || !head) return undefined;
  const graph = wholeFromTable(root, JSON.parse(head) as GraphHead, parseTable(nodes), ids);
  return { emitted: JSON.parse(emitted) as Emitted, graph };
}

/**
 * After lost state (`atlas recover`): each root's next emission numbers after what the output
 * already holds, so sequence numbers never repeat whatever was lost. The recorded hash is
 * emptied, so the first graph after recovery is emitted whatever it is. Returns the roots moved.
 */
export async function continueAfter(
  redis: Redis,
  store: CanonicalStore,
  published: ReadonlyMap<string, bigint>,
): Promise<number> {
  const known = await loadEmitted(redis, store);
  const multi = redis.multi();
  let moved = 0;
  for (const [root, seq] of published) {
    if (BigInt(known.get(root)?.sequence_number ?? 0) >= seq) continue;
    const emitted: Emitted = { hash: '', sequence_number: Number(seq), event_seq: 0 };
    multi.hset(store.roots, root, JSON.stringify(emitted));
    moved++;
  }
  await multi.exec();
  return moved;
}

/** The graph of an emission cannot be rebuilt from what canonical stores now. */
export class GraphUnavailableError extends Error {
  constructor(root: string, sequenceNumber: string, why: string) {
    super(`the graph of root ${root} at sequence_number ${sequenceNumber} cannot be rebuilt: ${why}`);
    this.name = 'GraphUnavailableError';
  }
}

/**
 * What rebuilds the graph of canonical's output entry `entry` (a delta whose base its reader
 * lacks) from canonical's store, in order: whole tables and deltas to apply. Read in one MULTI
 * with the output entries after it. The held table's subtrees (those that left stay until the
 * table is rewritten whole) give the tree from the entry's hash, and the held ids rolled back
 * through the later entries' id changes give its ids. An entry passed in memory (a chain: not
 * yet committed) builds on the stored graph itself. GraphUnavailableError when it is not
 * possible (a later whole table, a rewrite that dropped a subtree, a held graph that is neither
 * the entry's base nor the last emitted one): never a guess.
 */
export async function graphAt(redis: Redis, keys: Keys, entry: Entry): Promise<GraphDelta[]> {
  const store = canonicalStore(keys);
  const delta = entry.json<GraphDelta>('delta');
  const root = delta.root_id;
  const seq = entry.text('sequence_number');
  const inStream = /^\d+-\d+$/.test(entry.id);
  const multi = redis.multi().hget(store.held, root).hgetall(store.table(root)).smembers(store.ids(root));
  if (inStream) multi.xrange(keys.stream(streams.canonical), `(${entry.id}`, '+');
  const [headJson, nodes, ids, after] = results(await multi.exec()) as [
    string | null,
    Record<string, string>,
    string[],
    [string, string[]][] | undefined,
  ];
  if (!headJson) throw new GraphUnavailableError(root, seq, 'canonical holds no graph of this root');
  const head = JSON.parse(headJson) as GraphHead;
  const table = parseTable(nodes);
  if (!inStream && head.hash === delta.base) return [wholeOrUnavailable(root, seq, head, table, ids), delta];
  const later = await laterDeltas(redis, keys, after ?? [], root);
  if (head.hash !== (later.at(-1) ?? delta).hash)
    throw new GraphUnavailableError(root, seq, 'the graph canonical holds is not its last emitted one');
  const held = new Set(ids);
  for (const d of later.reverse()) {
    if (d.base === '') throw new GraphUnavailableError(root, seq, 'a whole graph was emitted after it');
    for (const id of d.ids_added) held.delete(id);
    for (const id of d.ids_removed) held.add(id);
  }
  // canonical's deltas list every attachment (see its `outgoing`), so the entry names its whole head.
  const own: GraphHead = {
    hash: delta.hash,
    own: delta.own,
    attached: delta.attached,
    expanded_nodes: delta.expanded_nodes,
    meta: delta.meta,
  };
  return [wholeOrUnavailable(root, seq, own, table, [...held])];
}

function wholeOrUnavailable(
  root: string,
  seq: string,
  head: GraphHead,
  table: ReadonlyMap<string, DeltaNode>,
  ids: string[],
): GraphDelta {
  try {
    return wholeFromTable(root, head, table, ids);
  } catch (err) {
    throw new GraphUnavailableError(root, seq, (err as Error).message);
  }
}

/** The deltas of `root` among canonical's output entries `raw`, in stream order. */
async function laterDeltas(
  redis: Redis,
  keys: Keys,
  raw: [string, string[]][],
  root: string,
): Promise<GraphDelta[]> {
  const entries = parseEntries(raw.map(([id, flat]) => [Buffer.from(id), flat.map((f) => Buffer.from(f))]));
  const mine = entries.filter((e) => e.optionalText('root') === root && e.has('delta'));
  const failed = await resolveBlobs(redis, keys, mine);
  if (failed.size > 0) throw new GraphUnavailableError(root, '?', 'a later output entry cannot be read');
  return mine.map((e) => e.json<GraphDelta>('delta'));
}
