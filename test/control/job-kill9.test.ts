/**
 * A control job survives the kill -9 of the instance running it: two `atlas run transitive`
 * processes (active + hot standby), a rebuild enqueued with `--no-wait`, the active one killed
 * while the job is active. The job's lock lapses, BullMQ's stalled check puts it back, the standby
 * (now active) runs it: completed once, its result reported by one process, and its writes made
 * once (one set of rebuild graphs on the output, whether the kill came before or after its commit).
 */
import { afterEach, expect, it } from 'vitest';
import { findJob } from '../../pipeline/control.ts';
import { streams } from '../../stages/streams.ts';
import { validateEvent } from '../../stages/validate/schemas.ts';
import { atlasOn } from '../support/control.ts';
import { type Envelope, spaceCreated, spaceId, trustExtended } from '../support/events.ts';
import { delay, eventually } from '../support/eventually.ts';
import { leaseHolderPid } from '../support/pipeline-processes.ts';
import { type Child, killChildren, spawnAtlas } from '../support/processes.ts';
import { useRedis } from '../support/redis.ts';
import { addEntries, readAll } from '../support/streams.ts';

const fx = useRedis('control-kill9');
afterEach(killChildren);

const SPACES = 1500;
const roots = [spaceId(1), spaceId(2)];

/** Validated entries as the validate stage writes them (seq 1…n). */
async function writeValidated(events: Envelope[]): Promise<void> {
  const entries = events.map((e, i) => {
    const r = validateEvent(e.event_type, e.version, e.payload);
    if (!r.ok) throw new Error(r.message);
    return {
      seq: String(i + 1),
      event_id: e.event_id,
      event_type: r.event.event_type,
      event: JSON.stringify(r.event),
      received_at: String(Date.now()),
      traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`,
    };
  });
  for (let i = 0; i < entries.length; i += 500)
    await addEntries(fx.redis, fx.keys.stream(streams.validated), entries.slice(i, i + 500));
}

it('a rebuild job whose instance is killed -9 mid-way is run again by the standby, once', async () => {
  const events: Envelope[] = [];
  for (let n = 1; n <= SPACES; n++) events.push(spaceCreated(n));
  // Wide, not deep: each event adds one child to a root (a long chain would be slow to apply).
  for (let n = 3; n <= SPACES; n++) events.push(trustExtended(n % 2 === 0 ? 1 : 2, n));
  await writeValidated(events);
  const env = { ATLAS_PREFIX: fx.prefix, ATLAS_ROOT_SPACE_ID: roots.join(','), ATLAS_LEASE_MS: '1000' };
  const procs: Child[] = [spawnAtlas(['run', 'transitive'], env), spawnAtlas(['run', 'transitive'], env)];
  const order = fx.keys.of('order', 'transitive');
  await eventually(
    async () => expect(Number(await fx.redis.hget(order, ''))).toBe(events.length + 1),
    180_000,
    200,
  );

  // Enqueue, catch the job running, kill its instance; a job too quick to catch is tried again.
  let killed: Child | undefined;
  let jobId = '';
  let attempt = 0;
  for (; attempt < 5 && !killed; attempt++) {
    const queued = await atlasOn(fx.prefix, ['rebuild', 'transitive', '--no-wait', '--json']);
    expect(queued.code).toBe(0);
    jobId = JSON.parse(queued.stdout).id;
    for (;;) {
      const job = await findJob(fx.redis, fx.keys, ['transitive'], jobId);
      if (job?.state === 'completed') break;
      if (job?.state === 'active') {
        const pid = await leaseHolderPid(fx.redis, fx.keys, 'transitive');
        killed = procs.find((p) => p.pid === pid);
        await killed?.kill9();
        break;
      }
      await delay(5);
    }
  }
  expect(killed, 'a rebuild job was caught running').toBeDefined();
  const survivor = procs.find((p) => p !== killed)!;
  const job = await eventually(
    async () => {
      const j = await findJob(fx.redis, fx.keys, ['transitive'], jobId);
      expect(j?.state).toBe('completed');
      return j!;
    },
    120_000,
    200,
  );
  expect(job.result?.summary).toContain('transitive rebuilt from the first event');
  expect(job.result?.events).toBe(events.length);
  // Reported once, by the survivor; the killed one never finished it.
  expect(survivor.logsMatching((l) => l.msg === 'control job done' && l.job === jobId)).toHaveLength(1);
  expect(killed!.logsMatching((l) => l.msg === 'control job done' && l.job === jobId)).toHaveLength(0);
  // Written once: each job's rebuild graphs appear once per root (earlier, uncaught jobs included).
  const out = await readAll(fx.redis, fx.keys.stream(streams.transitive));
  const rebuilt = out.filter((e) => e.has('rebuild'));
  const jobs = (await atlasOn(fx.prefix, ['jobs', '--stage', 'transitive', '--json'])).stdout;
  const completed = (JSON.parse(jobs) as Array<{ state: string }>).filter((j) => j.state === 'completed');
  expect(rebuilt).toHaveLength(completed.length * roots.length);
  const outSeqs = out.map((e) => Number(e.text('out_seq')));
  expect(outSeqs).toEqual(outSeqs.map((_, i) => i + 1));
  const recorded = survivor.logsMatching(/recorded result/).length > 0;
  console.log(
    `job-kill9: caught at try ${attempt}; the retry ${recorded ? 'found the recorded result (killed after its commit)' : 'did the work (killed before its commit)'}`,
  );
  await survivor.term();
}, 300_000);
