import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * Every test talks to the real Redis at REDIS_URL (default redis://127.0.0.1:6379) and, for the
 * Kafka tests, the real broker at 127.0.0.1:9092 — `npm test` starts both (ops/services). Files
 * isolate themselves with their own ATLAS_PREFIX and topic, so they run in parallel; the e2e
 * files start whole pipelines (and one stops a broker), so they run one at a time, after the rest.
 */
export default defineConfig({
  test: {
    environment: 'node',
    pool: 'forks',
    // Most files wait on Redis and child processes; the default (cores - 1) would run one at a time.
    maxWorkers: Math.max(2, availableParallelism()),
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 15_000,
    slowTestThreshold: 5_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'default',
          include: ['test/**/*.test.ts'],
          // test/chaos is `npm run chaos` (vitest.chaos.config.ts)
          exclude: ['test/e2e/**', 'test/chaos/**'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
