/**
 * The lane scheduler's order (pipeline/lanes.ts): a waiting critical batch always goes next; the
 * other lanes share turns by weighted fair queuing — by weight under load, and none starves.
 */
import { describe, expect, it } from 'vitest';
import { type Lane, LaneScheduler, parseLaneWeights } from '../../pipeline/lanes.ts';

/** Runs `requests` against a scheduler whose server is busy at first; returns the grant order. */
async function grantOrder(scheduler: LaneScheduler, requests: [Lane, number][]): Promise<Lane[]> {
  const order: Lane[] = [];
  const first = await scheduler.turn('low', 1); // holds the server while the others queue
  const turns = requests.map(async ([lane, cost]) => {
    const done = await scheduler.turn(lane, cost);
    order.push(lane);
    await Promise.resolve();
    done();
  });
  first();
  await Promise.all(turns);
  return order;
}

describe('LaneScheduler', () => {
  it('serves a waiting critical batch before every other lane, whatever was queued first', async () => {
    const s = new LaneScheduler({ high: 8, normal: 4, low: 1 });
    const order = await grantOrder(s, [
      ['low', 10],
      ['normal', 10],
      ['high', 10],
      ['critical', 10],
    ]);
    expect(order[0]).toBe('critical');
  });

  it('shares turns by weight under load: high=3, low=1 → three high batches per low one', async () => {
    const s = new LaneScheduler({ high: 3, normal: 2, low: 1 });
    const requests: [Lane, number][] = [];
    for (let i = 0; i < 12; i++) requests.push(['high', 10], ['low', 10]);
    const order = await grantOrder(s, requests);
    const firstEight = order.slice(0, 8);
    expect(firstEight.filter((l) => l === 'high').length).toBe(6);
    expect(firstEight.filter((l) => l === 'low').length).toBe(2);
    // nobody starves: every low batch is served in the end
    expect(order.filter((l) => l === 'low').length).toBe(12);
  });

  it('reads weights from the setting and names what is wrong', () => {
    expect(parseLaneWeights('high=8,normal=4,low=1')).toEqual({ high: 8, normal: 4, low: 1 });
    expect(parseLaneWeights('high=8,normal=4')).toBe('no weight for lane low');
    expect(parseLaneWeights('high=8,normal=0,low=1')).toBe('weight of normal must be a positive integer');
    expect(parseLaneWeights('urgent=1')).toMatch(/unknown lane urgent/);
  });
});
