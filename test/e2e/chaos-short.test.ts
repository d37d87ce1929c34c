/**
 * The short chaos run in `npm test` (test/chaos/chaos.ts with CHAOS_SHORT=1): every fault kind a
 * few times under load — kill -9, SIGSTOP of singletons past their lease, a dropped reply per
 * stage, a Redis restart with its AOF, a broker outage with emit paused — then per root 1..N
 * exactly once in order, the reference's final graph, every accepted event validated or
 * dead-lettered. `npm run chaos` is the long run.
 */
import { chaosOptions, chaosTest } from '../chaos/chaos.ts';

chaosTest(
  'short chaos: nothing lost, duplicated or out of order',
  chaosOptions({ ...process.env, CHAOS_SHORT: '1' }),
);
