import { describe, expect, it } from 'vitest';
import { type Beat, pipelineProblems } from '../../pipeline/heartbeat.ts';
import { ProgressWatch } from '../../pipeline/watchdog.ts';

describe('ProgressWatch', () => {
  it('reports a stall once work waits longer than stallMs without progress, then escalates', () => {
    const w = new ProgressWatch(1000, 0);
    expect(w.assess({ now: 999, work: 5, excused: false })).toBe('ok');
    expect(w.assess({ now: 1000, work: 5, excused: false })).toBe('stalled');
    expect(w.assess({ now: 1999, work: 5, excused: false })).toBe('stalled');
    expect(w.assess({ now: 2000, work: 5, excused: false })).toBe('escalate');
    w.progressed(2100);
    expect(w.assess({ now: 2200, work: 5, excused: false })).toBe('ok');
  });

  it('never counts time with nothing to do, or time excused (backpressure, a sink down, standby)', () => {
    const w = new ProgressWatch(1000, 0);
    expect(w.assess({ now: 5000, work: 0, excused: false })).toBe('ok');
    expect(w.assess({ now: 5500, work: 3, excused: false })).toBe('ok');
    expect(w.assess({ now: 9000, work: 3, excused: true })).toBe('ok');
    expect(w.assess({ now: 9999, work: 3, excused: false })).toBe('ok');
    expect(w.assess({ now: 10_000, work: 3, excused: false })).toBe('stalled');
  });
});

const beat = (over: Partial<Beat>): Beat => ({
  stage: 'emit',
  consumer: 'c1',
  pid: 1,
  singleton: true,
  role: 'active',
  progress_at: 0,
  stalled: false,
  problem: null,
  at: 0,
  ...over,
});

describe('pipelineProblems', () => {
  it('is empty for a healthy pipeline', () => {
    expect(
      pipelineProblems(
        ['emit', 'validate'],
        [beat({}), beat({ consumer: 'c2', role: 'standby' }), beat({ stage: 'validate', singleton: false })],
      ),
    ).toEqual([]);
  });

  it('names a stage that ran and has no live instance, or no active one', () => {
    expect(pipelineProblems(['emit', 'validate'], [beat({ role: 'standby' })])).toEqual([
      'emit: no active instance (standby)',
      'validate: no live instance',
    ]);
  });

  it("names each active instance's problem, and stalls", () => {
    expect(
      pipelineProblems(
        ['emit', 'canonical'],
        [beat({ problem: 'sink unreachable (circuit open)' }), beat({ stage: 'canonical', stalled: true })],
      ),
    ).toEqual(['emit (c1): sink unreachable (circuit open)', 'canonical (c1): stalled']);
  });
});
