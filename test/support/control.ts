/** Helpers of the control-plane tests: events through the real accept path, and `atlas` runs. */
import type { Redis } from 'ioredis';
import type { Keys } from '../../pipeline/keys.ts';
import { accept } from '../../stages/ingest/accept.ts';
import type { Envelope } from './events.ts';
import { runAtlas } from './processes.ts';
import { joinedGeneration } from './redis.ts';

/** Accepts events as the door does (dedup, dense seq, the ingest stream). */
export async function acceptEvents(redis: Redis, keys: Keys, envelopes: Envelope[]): Promise<void> {
  await accept(
    redis,
    {
      keys,
      dedupWindowS: 600,
      claimCheckBytes: 65536,
      generation: () => joinedGeneration(redis, keys),
    },
    envelopes as never,
    { traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`, requestId: 'control-test' },
  );
}

/** `atlas <args>` on a prefix, to its end; a CLI run is slow on a loaded machine. */
export function atlasOn(
  prefix: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runAtlas(args, { ATLAS_PREFIX: prefix, LOG_LEVEL: 'warn', ...env }, 90_000);
}
