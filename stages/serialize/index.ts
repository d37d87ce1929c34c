/**
 * Stage `serialize`: stateless (run replicas freely). Encodes each emission as the protobuf
 * `CanonicalGraphUpdated`; the bytes go in field `value` (claim-checked when large) with a
 * readable `summary` beside them for redis-cli.
 */
import { streams } from '../../pipeline/keys.ts';
import type { StageFactory } from '../../pipeline/stage.ts';
import type { GraphWire } from '../topology/graph-wire.ts';
import { encodeCanonicalGraphUpdated } from './encode.ts';

export const createSerialize: StageFactory = () => ({
  name: 'serialize',
  input: streams.canonical,
  output: streams.serialized,
  marker: ['root', 'sequence_number', 'received_at'],
  handle(entries, step) {
    for (const entry of entries) {
      const graph = entry.json<GraphWire>('graph');
      const sequenceNumber = entry.text('sequence_number');
      const value = encodeCanonicalGraphUpdated(graph, BigInt(sequenceNumber));
      const summary = {
        root: graph.root_id,
        sequence_number: Number(sequenceNumber),
        block_number: graph.meta.block_number,
        canonical_spaces: graph.canonical_space_ids.length,
        expanded_nodes: graph.expanded_nodes,
        distinct_nodes: graph.nodes.length,
        bytes: value.length,
      };
      step.send({
        root: graph.root_id,
        sequence_number: sequenceNumber,
        summary: JSON.stringify(summary),
        value: Buffer.from(value.buffer, value.byteOffset, value.length),
        received_at: entry.text('received_at'),
        traceparent: entry.text('traceparent'),
      });
      step.ack(entry);
    }
  },
});
