/** The newest graph of each root still in the transitive stream (canonical's rebuild reads it). */
import type { Redis } from 'ioredis';
import { resolveBlobs } from '../../pipeline/claim-check.ts';
import { parseEntries } from '../../pipeline/entry.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { streams } from '../streams.ts';

export interface LatestGraph {
  hash: string;
  graph: string;
  eventSeq: number;
}

const PAGE = 1000;

/** Newest first, so each root's first sighting is its newest graph. */
export async function latestGraphs(redis: Redis, keys: Keys): Promise<Map<string, LatestGraph>> {
  const stream = keys.stream(streams.transitive);
  const found = new Map<string, LatestGraph>();
  let cursor = '+';
  for (;;) {
    const raw = (await redis.callBuffer('XREVRANGE', stream, cursor, '-', 'COUNT', PAGE)) as [
      Buffer,
      Buffer[],
    ][];
    const page = parseEntries(raw);
    await resolveBlobs(redis, keys, page);
    for (const e of page) {
      const root = e.optionalText('root');
      const graph = e.optionalText('graph');
      if (!root || !graph || found.has(root)) continue;
      found.set(root, { hash: e.text('hash'), graph, eventSeq: Number(e.text('event_seq')) });
    }
    if (page.length < PAGE) return found;
    cursor = `(${page[page.length - 1]!.id}`;
  }
}
