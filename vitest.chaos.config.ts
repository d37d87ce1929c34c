import { defineConfig } from 'vitest/config';

/**
 * `npm run chaos`: the long chaos run (test/chaos), apart from `npm test`. One file, one test;
 * its size comes from CHAOS_* variables (test/chaos/chaos.ts chaosOptions).
 */
export default defineConfig({
  test: {
    environment: 'node',
    pool: 'forks',
    include: ['test/chaos/**/*.test.ts'],
    fileParallelism: false,
    // the test sets its own timeout from the run's size
    hookTimeout: 900_000,
    teardownTimeout: 300_000,
  },
});
