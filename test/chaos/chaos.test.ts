/**
 * `npm run chaos`: the long chaos run (test/chaos/chaos.ts), sized by CHAOS_* variables; fails
 * on any violation, after printing the summary table and a JSON line.
 */
import { chaosOptions, chaosTest } from './chaos.ts';

chaosTest('the pipeline under chaos: nothing lost, duplicated or out of order', chaosOptions());
