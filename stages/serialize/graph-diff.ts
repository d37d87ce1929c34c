/**
 * Graph diffs: what turns one emitted canonical tree of a root into the next.
 *
 * A canonical tree is the root's own (explicit) tree, in which each space is once, plus attached
 * subtrees: a member's subtree hung as a topic child under each anchor of its topic, the same
 * subtree under every anchor. So the tree is described once, flat, by a `DiffState`: a place
 * (parent, edge, topic, distance) per node of the own tree, one per node of each attached
 * subtree, and the list of attachments. A diff is the change of that description; the children
 * order is a rule (below), not data, so a consumer rebuilds the exact tree from it.
 *
 * Children order, checked on every tree indexed here (a tree that breaks it is refused with
 * `NotDiffableError`, and the caller sends a snapshot instead of guessing):
 * - in the own tree: children that are not attachments, by space id; then the attachments, by
 *   (topic id, member id);
 * - inside an attached subtree: by space id.
 *
 * Pure: no I/O; the same trees give the same diff, byte for byte once encoded.
 */
import type { GraphWire } from '../topology/graph-wire.ts';
import type { EdgeKind, TreeNode } from '../topology/tree.ts';
import { TreeInterner } from '../topology/tree.ts';

/** Where a node sits. `parent` is '' for the root of the tree and of an attached subtree. */
export interface Place {
  parent: string;
  edge: EdgeKind;
  /** '' unless edge is 'topic'. */
  topic: string;
  /** Hops from the root (own tree) or from the member (attached subtree). */
  distance: number;
}

/** Flat description of one canonical tree. Map keys are lowercase hex ids. */
export interface DiffState {
  root: string;
  /** The root's own tree, by space: its spaces are the canonical set. */
  own: Map<string, Place>;
  /** Attached subtrees by member (a space announces one topic), each by space. */
  regions: Map<string, Map<string, Place>>;
  /** Attachment keys: anchor id + topic id + member id. */
  attachments: Set<string>;
}

export type ChangeType = 'added' | 'removed' | 'moved';

export interface NodeChange {
  type: ChangeType;
  space: string;
  /** '' for the own tree, else the attached subtree's member. */
  member: string;
  /** Absent for `removed`. */
  place?: Place;
}

export interface Attachment {
  anchor: string;
  topic: string;
  member: string;
}

export interface GraphDiff {
  changes: NodeChange[];
  attachmentsRemoved: Attachment[];
  attachmentsAdded: Attachment[];
}

/** The tree does not follow the shape a diff describes; send a snapshot. */
export class NotDiffableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotDiffableError';
  }
}

/** A diff does not fit the state it is applied to (a wrong base, a lost or repeated message). */
export class DiffMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiffMismatchError';
  }
}

const ID_CHARS = 32;

export function attachmentKey(a: Attachment): string {
  return a.anchor + a.topic + a.member;
}

function attachmentOf(key: string): Attachment {
  return {
    anchor: key.slice(0, ID_CHARS),
    topic: key.slice(ID_CHARS, 2 * ID_CHARS),
    member: key.slice(2 * ID_CHARS),
  };
}

/** Describes a tree as it travels between stages (children before parents, root last). */
export function indexGraph(graph: GraphWire): DiffState {
  const { nodes } = graph;
  const rootAt = nodes.length - 1;
  const top = nodes[rootAt];
  if (!top) throw new NotDiffableError(`graph of root ${graph.root_id} has no nodes`);
  if (top[1] !== 'root') throw new NotDiffableError(`tree root has edge ${top[1]}`);
  const state: DiffState = { root: top[0], own: new Map(), regions: new Map(), attachments: new Set() };
  state.own.set(top[0], { parent: '', edge: 'root', topic: '', distance: 0 });
  const regionAt = new Map<string, number>();
  const stack: Array<[number, number]> = [[rootAt, 0]];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [at, distance] = item;
    const [space, , , children] = nodes[at]!;
    let lastSpace = '';
    let lastAttachment = '';
    for (const c of children) {
      const [child, edge, topic] = nodes[c]!;
      if (edge === 'topic') {
        const key = topic + child;
        if (key <= lastAttachment) throw new NotDiffableError(`attachments of ${space} out of order`);
        lastAttachment = key;
        state.attachments.add(space + key);
        addRegion(state, nodes, regionAt, child, c);
        continue;
      }
      if (lastAttachment !== '') throw new NotDiffableError(`${space}: a ${edge} child after an attachment`);
      if (child <= lastSpace) throw new NotDiffableError(`children of ${space} out of order`);
      if (edge === 'root') throw new NotDiffableError(`${child}: a root edge below the root`);
      if (state.own.has(child)) throw new NotDiffableError(`${child} twice in the own tree`);
      lastSpace = child;
      state.own.set(child, { parent: space, edge, topic: '', distance: distance + 1 });
      stack.push([c, distance + 1]);
    }
  }
  checkCanonicalSet(state, graph.canonical_space_ids);
  return state;
}

/** The canonical set is the own tree's spaces: a diff does not carry it. */
function checkCanonicalSet(state: DiffState, ids: readonly string[]): void {
  const own = canonicalSpaceIds(state);
  if (own.length !== ids.length || own.some((id, i) => id !== ids[i])) {
    throw new NotDiffableError('canonical_space_ids are not the spaces of the own tree');
  }
}

/**
 * Every attachment of one member must hold the same subtree, through the same topic: it is
 * described once.
 */
function addRegion(
  state: DiffState,
  nodes: GraphWire['nodes'],
  regionAt: Map<string, number>,
  region: string,
  at: number,
): void {
  const seen = regionAt.get(region);
  if (seen === at) return;
  const described = indexRegion(nodes, at);
  if (seen === undefined) {
    regionAt.set(region, at);
    state.regions.set(region, described);
  } else if (!samePlaces(state.regions.get(region)!, described)) {
    throw new NotDiffableError(`attachments of ${region} differ`);
  }
}

function indexRegion(nodes: GraphWire['nodes'], top: number): Map<string, Place> {
  const [member, , topic] = nodes[top]!;
  const places = new Map<string, Place>([[member, { parent: '', edge: 'topic', topic, distance: 0 }]]);
  const stack: Array<[number, number]> = [[top, 0]];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [at, distance] = item;
    const [space, , , children] = nodes[at]!;
    let lastSpace = '';
    for (const c of children) {
      const [child, edge, childTopic] = nodes[c]!;
      if (child <= lastSpace) throw new NotDiffableError(`children of ${space} out of order`);
      if (edge === 'root') throw new NotDiffableError(`${child}: a root edge below the root`);
      if (places.has(child)) throw new NotDiffableError(`${child} twice in the subtree of ${member}`);
      lastSpace = child;
      places.set(child, { parent: space, edge, topic: childTopic, distance: distance + 1 });
      stack.push([c, distance + 1]);
    }
  }
  return places;
}

/**
 * Distance is left out: a node whose parent edge stays keeps its place when an ancestor moves,
 * and listing every descendant whose distance shifted would make one moved edge near the root
 * cost a change per node below it. A consumer that tracks distances shifts a moved node's
 * subtree by the node's own shift (a distance is always the parent's + 1).
 */
function samePlace(a: Place, b: Place): boolean {
  return a.parent === b.parent && a.edge === b.edge && a.topic === b.topic;
}

function samePlaces(a: Map<string, Place>, b: Map<string, Place>): boolean {
  if (a.size !== b.size) return false;
  for (const [space, place] of a) {
    const other = b.get(space);
    if (!other || !samePlace(place, other)) return false;
  }
  return true;
}

/** The canonical set, in id order. */
export function canonicalSpaceIds(state: DiffState): string[] {
  return [...state.own.keys()].sort();
}

const NO_PLACES = new Map<string, Place>();

/** What turns `from` into `to`, in a deterministic order. */
export function diffStates(from: DiffState, to: DiffState): GraphDiff {
  if (from.root !== to.root) throw new NotDiffableError(`roots differ: ${from.root}, ${to.root}`);
  const changes = diffPlaces(from.own, to.own, '');
  const regions = [...new Set([...from.regions.keys(), ...to.regions.keys()])].sort();
  for (const member of regions) {
    const before = from.regions.get(member) ?? NO_PLACES;
    const after = to.regions.get(member) ?? NO_PLACES;
    if (before !== after) changes.push(...diffPlaces(before, after, member));
  }
  return {
    changes,
    attachmentsRemoved: missingFrom(from.attachments, to.attachments),
    attachmentsAdded: missingFrom(to.attachments, from.attachments),
  };
}

function diffPlaces(before: Map<string, Place>, after: Map<string, Place>, member: string): NodeChange[] {
  const changes: NodeChange[] = [];
  for (const [space, place] of after) {
    const old = before.get(space);
    if (!old) changes.push({ type: 'added', space, member, place });
    else if (!samePlace(old, place)) changes.push({ type: 'moved', space, member, place });
  }
  for (const space of before.keys()) {
    if (!after.has(space)) changes.push({ type: 'removed', space, member });
  }
  return changes.sort((a, b) => (a.space < b.space ? -1 : 1));
}

function missingFrom(these: Set<string>, those: Set<string>): Attachment[] {
  return [...these]
    .filter((k) => !those.has(k))
    .sort()
    .map(attachmentOf);
}

export function isEmptyDiff(diff: GraphDiff): boolean {
  return diff.changes.length + diff.attachmentsRemoved.length + diff.attachmentsAdded.length === 0;
}

/**
 * Applies a diff to a state, all of it or nothing: the state is changed only when every change
 * fits (a removed or moved node exists, an added one does not).
 */
export function applyDiff(state: DiffState, diff: GraphDiff): DiffState {
  const next: DiffState = {
    root: state.root,
    own: new Map(state.own),
    regions: new Map(state.regions),
    attachments: new Set(state.attachments),
  };
  const copied = new Set<string>();
  const shifted = new Map<Map<string, Place>, Array<[string, number]>>();
  const listed = new Map<Map<string, Place>, Set<string>>();
  for (const change of diff.changes) {
    const places = placesFor(next, change, copied);
    listed.set(places, (listed.get(places) ?? new Set()).add(change.space));
    const old = places.get(change.space);
    if (change.type === 'added' ? old : !old) {
      throw new DiffMismatchError(`${change.type} ${change.space}: the node is ${old ? 'there' : 'missing'}`);
    }
    if (change.type === 'removed') places.delete(change.space);
    else places.set(change.space, checkedPlace(change));
    const shift = old && change.place ? change.place.distance - old.distance : 0;
    if (shift !== 0) shifted.set(places, [...(shifted.get(places) ?? []), [change.space, shift]]);
  }
  for (const [places, moved] of shifted) shiftDistances(places, moved, listed.get(places)!);
  for (const [region, places] of next.regions) if (places.size === 0) next.regions.delete(region);
  for (const change of diff.changes) checkParent(next, change);
  for (const a of diff.attachmentsRemoved) {
    if (!next.attachments.delete(attachmentKey(a))) throw new DiffMismatchError(`no attachment ${a.member}`);
  }
  for (const a of diff.attachmentsAdded) {
    const key = attachmentKey(a);
    if (next.attachments.has(key)) throw new DiffMismatchError(`attachment ${a.member} is there`);
    next.attachments.add(key);
  }
  return next;
}

/**
 * Nodes below a moved node keep their place but not their distance: each gets its moved
 * ancestor's shift, unless the diff placed it itself (with its distance).
 */
function shiftDistances(
  places: Map<string, Place>,
  moved: Array<[string, number]>,
  listed: Set<string>,
): void {
  const children = childrenOf(places);
  const stack = [...moved];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [space, shift] = item;
    for (const child of children.get(space) ?? []) {
      if (listed.has(child)) continue;
      const place = places.get(child)!;
      places.set(child, { ...place, distance: place.distance + shift });
      stack.push([child, shift]);
    }
  }
}

/** The map a change is about, copied before its first write (the input state stays as it was). */
function placesFor(state: DiffState, change: NodeChange, copied: Set<string>): Map<string, Place> {
  if (change.member === '') return state.own;
  const region = change.member;
  if (!copied.has(region)) {
    copied.add(region);
    state.regions.set(region, new Map(state.regions.get(region)));
  }
  return state.regions.get(region)!;
}

/** A placed node hangs under a node that is there after the diff (or is a subtree's top). */
function checkParent(state: DiffState, change: NodeChange): void {
  const parent = change.place?.parent;
  if (!parent) return;
  const places = change.member === '' ? state.own : state.regions.get(change.member);
  if (!places?.has(parent)) throw new DiffMismatchError(`${change.space}: parent ${parent} is missing`);
}

function checkedPlace(change: NodeChange): Place {
  if (!change.place) throw new DiffMismatchError(`${change.type} ${change.space} without a place`);
  return change.place;
}

/**
 * Rebuilds the tree a state describes, hash-consed: `tree.hash` is the Merkle hash a diff
 * carries, so a consumer checks what it applied. Each attached subtree is built once.
 */
export function buildTree(state: DiffState, interner = new TreeInterner()): TreeNode {
  const ownChildren = childrenOf(state.own);
  const anchored = new Map<string, string[]>();
  for (const key of [...state.attachments].sort()) {
    const { anchor } = attachmentOf(key);
    if (!state.own.has(anchor)) throw new DiffMismatchError(`attachment under ${anchor}, not in the tree`);
    const list = anchored.get(anchor) ?? [];
    list.push(key.slice(ID_CHARS));
    anchored.set(anchor, list);
  }
  const regionTrees = new Map<string, TreeNode>();
  const regionTree = (attached: string): TreeNode => {
    const topic = attached.slice(0, ID_CHARS);
    const member = attached.slice(ID_CHARS);
    let tree = regionTrees.get(member);
    if (!tree) {
      const places = state.regions.get(member);
      if (!places) throw new DiffMismatchError(`no subtree of ${member}`);
      tree = buildPlaces(places, member, childrenOf(places), () => [], interner);
      regionTrees.set(member, tree);
    }
    if (tree.topic !== topic) throw new DiffMismatchError(`${member} attached through two topics`);
    return tree;
  };
  const attachedTo = (space: string) => (anchored.get(space) ?? []).map(regionTree);
  return buildPlaces(state.own, state.root, ownChildren, attachedTo, interner);
}

/** Children of each node by space id (the maps are unordered). */
function childrenOf(places: Map<string, Place>): Map<string, string[]> {
  const children = new Map<string, string[]>();
  for (const [space, { parent }] of places) {
    if (parent === '') continue;
    const list = children.get(parent) ?? [];
    list.push(space);
    children.set(parent, list);
  }
  for (const list of children.values()) list.sort();
  return children;
}

/** Iterative postorder: trees can be 100K deep. */
function buildPlaces(
  places: Map<string, Place>,
  top: string,
  children: Map<string, string[]>,
  extra: (space: string) => TreeNode[],
  interner: TreeInterner,
): TreeNode {
  const built = new Map<string, TreeNode>();
  const stack: Array<{ space: string; expanded: boolean }> = [{ space: top, expanded: false }];
  let visited = 0;
  while (stack.length > 0) {
    const item = stack[stack.length - 1]!;
    const below = children.get(item.space) ?? [];
    if (!item.expanded) {
      item.expanded = true;
      if (++visited > places.size) throw new DiffMismatchError(`a cycle through ${item.space}`);
      for (const c of below) stack.push({ space: c, expanded: false });
      continue;
    }
    stack.pop();
    const place = places.get(item.space);
    if (!place) throw new DiffMismatchError(`${item.space} is not in the tree`);
    const kids = below.map((c) => built.get(c)!);
    kids.push(...extra(item.space));
    built.set(item.space, interner.node(item.space, place.edge, place.topic || null, kids));
  }
  if (visited !== places.size) throw new DiffMismatchError(`${places.size - visited} node(s) off the tree`);
  return built.get(top)!;
}
