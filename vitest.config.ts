import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * Every test talks to the real Redis at REDIS_URL (default redis://127.0.0.1:6379; start it with
 * `bash ops/services up redis`). Files isolate themselves with their own ATLAS_PREFIX, so they run
 * in parallel; tests that start worker processes need tens of seconds, hence the long timeouts.
 */
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    // Most files wait on Redis and child processes; the default (cores - 1) would run one at a time.
    maxWorkers: Math.max(2, availableParallelism()),
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 15_000,
    slowTestThreshold: 5_000,
  },
});
