/** Emit's output messages for sink tests: a one-node canonical graph per root and sequence. */
import type { OutMessage } from '../../stages/emit/sink.ts';
import { encodeCanonicalGraphUpdated } from '../../stages/serialize/encode.ts';

export const root = (n: number): string => n.toString(16).padStart(32, '0');

export function message(rootId: string, seq: number, traceparent?: string): OutMessage {
  const value = encodeCanonicalGraphUpdated(
    {
      root_id: rootId,
      hash: '',
      expanded_nodes: 1,
      canonical_space_ids: [rootId],
      nodes: [[rootId, 'root', '', []]],
      meta: { block_number: String(seq), block_timestamp: '1732300000', tx_hash: '', cursor: `c:${seq}` },
    },
    seq,
  );
  return { rootId, sequenceNumber: BigInt(seq), value, traceparent };
}
