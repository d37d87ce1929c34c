/**
 * Stage `serialize`: encodes each emission as the protobuf `CanonicalGraphUpdated` (a snapshot)
 * or, with ATLAS_EMIT_MODE=diff|both, as `CanonicalGraphDiff` against the root's previous
 * emission. The bytes go in field `value` (claim-checked when large), the message name in
 * `message` (emit's Kafka header), with a readable `summary` beside them for redis-cli.
 *
 * Canonical sends each emission as a delta from the root's previous one (`delta`). Each
 * instance holds, in memory, the graph of the last emission it applied per root
 * (`DeltaReceiver`). Lacking an entry's base (the root's first emission here, a restart, a
 * replica that did not see the previous one, an entry read late) it rebuilds that emission's
 * graph from canonical's store (`graphAt`), never guessing; what cannot be rebuilt fails the
 * entry (GraphUnavailableError: retried, then dead-lettered).
 *
 * A diff needs the tree of the root's previous emission: each instance keeps, in memory, the
 * last tree it encoded per root (`Bases`). It writes a diff only when that tree is the one of
 * `sequence_number - 1`; otherwise (the root's first emission, a restart, a replica that did not
 * see the previous one) it writes a snapshot, never a diff against a guessed base. So replicas
 * stay safe to run, they only send more snapshots.
 */
import type { Config } from '../../pipeline/config.ts';
import type { Entry } from '../../pipeline/entry.ts';
import { metrics } from '../../pipeline/metrics.ts';
import type { StageFactory } from '../../pipeline/stage.ts';
import { graphAt } from '../canonical/store.ts';
import { contracts, streams } from '../streams.ts';
import { DeltaReceiver, type GraphDelta, MissingSubtreeError } from '../topology/graph-delta.ts';
import { type GraphWire, treeHashOf } from '../topology/graph-wire.ts';
import { DIFF_MESSAGE, encodeCanonicalGraphDiff, SNAPSHOT_MESSAGE } from './diff-codec.ts';
import { encodeCanonicalGraphUpdated } from './encode.ts';
import { type DiffState, diffStates, indexGraph, NotDiffableError } from './graph-diff.ts';

export const createSerialize: StageFactory = ({ config, redis, keys, log }) => {
  const encoder = new Encoder(config, (root, err) =>
    log.warn({ root, err: err.message }, 'serialize: a tree a diff cannot describe, sent as a snapshot'),
  );
  const held = new DeltaReceiver();
  /** The sequence number of the emission held per root (an entry read again needs nothing applied). */
  const heldSeq = new Map<string, string>();

  /** The graph of emission `entry`, from the one held before it or rebuilt from canonical's store. */
  async function graphOf(entry: Entry): Promise<GraphWire> {
    const delta = entry.json<GraphDelta>('delta');
    const root = delta.root_id;
    const seq = entry.text('sequence_number');
    if (heldSeq.get(root) !== seq) {
      heldSeq.delete(root);
      try {
        held.apply(delta);
      } catch (err) {
        if (!(err instanceof MissingSubtreeError)) throw err;
        metrics.graphRebuilds.inc({ stage: 'serialize' });
        for (const d of await graphAt(redis, keys, entry)) held.apply(d);
      }
      heldSeq.set(root, seq);
    }
    return held.wire(root);
  }

  return {
    name: 'serialize',
    input: streams.canonical,
    output: streams.serialized,
    marker: contracts.serialized.marker,
    async handle(entries, step) {
      for (const entry of entries) {
        const graph = await graphOf(entry);
        const sequenceNumber = entry.text('sequence_number');
        const encoded = encoder.encode(graph, BigInt(sequenceNumber));
        const summary = {
          root: graph.root_id,
          sequence_number: Number(sequenceNumber),
          message: encoded.message,
          ...(encoded.changes === undefined ? {} : { changes: encoded.changes }),
          ...(encoded.withTree ? { with_tree: true } : {}),
          block_number: graph.meta.block_number,
          canonical_spaces: graph.canonical_space_ids.length,
          expanded_nodes: graph.expanded_nodes,
          distinct_nodes: graph.nodes.length,
          bytes: encoded.value.length,
        };
        step.sendFor(entry, {
          root: graph.root_id,
          sequence_number: sequenceNumber,
          message: encoded.message,
          summary: JSON.stringify(summary),
          value: Buffer.from(encoded.value.buffer, encoded.value.byteOffset, encoded.value.length),
        });
        step.ack(entry);
      }
    },
  };
};

interface Encoded {
  message: typeof SNAPSHOT_MESSAGE | typeof DIFF_MESSAGE;
  value: Uint8Array;
  /** Node and attachment changes, for a diff. */
  changes?: number;
  withTree?: boolean;
}

/** The last tree encoded per root in this process, with its sequence number. */
interface Base {
  sequenceNumber: bigint;
  state: DiffState;
}

export class Encoder {
  private readonly bases = new Map<string, Base>();
  private readonly config: Pick<Config, 'ATLAS_EMIT_MODE' | 'ATLAS_SNAPSHOT_EVERY_DIFFS'>;
  private readonly refused: (root: string, err: NotDiffableError) => void;

  constructor(
    config: Pick<Config, 'ATLAS_EMIT_MODE' | 'ATLAS_SNAPSHOT_EVERY_DIFFS'>,
    refused: (root: string, err: NotDiffableError) => void = () => undefined,
  ) {
    this.config = config;
    this.refused = refused;
  }

  encode(graph: GraphWire, sequenceNumber: bigint): Encoded {
    if (this.config.ATLAS_EMIT_MODE === 'snapshot') return snapshot(graph, sequenceNumber);
    const state = this.describe(graph);
    const base = this.bases.get(graph.root_id);
    const encoded =
      state && base?.sequenceNumber === sequenceNumber - 1n
        ? this.diff(graph, sequenceNumber, base.state, state)
        : snapshot(graph, sequenceNumber);
    // Kept only once encoded (an emission that fails to encode is dead-lettered: the next one
    // then has no base), and only while it is the newest seen: an older emission read late (a
    // re-read of pending entries) must not replace it.
    if (!base || base.sequenceNumber < sequenceNumber) {
      if (state) this.bases.set(graph.root_id, { sequenceNumber, state });
      else this.bases.delete(graph.root_id);
    }
    return encoded;
  }

  private diff(graph: GraphWire, sequenceNumber: bigint, from: DiffState, to: DiffState): Encoded {
    const diff = diffStates(from, to);
    const every = BigInt(this.config.ATLAS_SNAPSHOT_EVERY_DIFFS);
    const withTree = this.config.ATLAS_EMIT_MODE === 'both' && sequenceNumber % every === 0n;
    const value = encodeCanonicalGraphDiff(graph, diff, {
      sequenceNumber,
      treeHash: treeHashOf(graph),
      withTree,
    });
    const changes = diff.changes.length + diff.attachmentsAdded.length + diff.attachmentsRemoved.length;
    return { message: DIFF_MESSAGE, value, changes, withTree };
  }

  private describe(graph: GraphWire): DiffState | null {
    try {
      return indexGraph(graph);
    } catch (err) {
      if (!(err instanceof NotDiffableError)) throw err;
      this.refused(graph.root_id, err);
      return null;
    }
  }
}

function snapshot(graph: GraphWire, sequenceNumber: bigint): Encoded {
  return { message: SNAPSHOT_MESSAGE, value: encodeCanonicalGraphUpdated(graph, sequenceNumber) };
}
