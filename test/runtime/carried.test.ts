/**
 * The runtime carries `received_at` and `traceparent` from an input to what a stage sends for it
 * (`step.sendFor`) and to its skip marker, alone and inside a chain; a stage's own value wins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Fields } from '../../pipeline/entry.ts';
import { Rejection, type StageFactory } from '../../pipeline/stage.ts';
import { testConfig } from '../support/config.ts';
import { eventually } from '../support/eventually.ts';
import { useRedis } from '../support/redis.ts';
import { addEntries, drained, readAll } from '../support/streams.ts';
import { startStage, stopStages } from '../support/workers.ts';

const fx = useRedis('carried');
afterEach(stopStages);

const TRACE_A = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const TRACE_B = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/**
 * Sends each input on with only `n` set (`own` inputs: with a traceparent of its own; skip
 * markers: as markers), and dead-letters those with `bad`, leaving a skip marker of `n`.
 */
function tagStage(name: string, input: string, output: string): StageFactory {
  return () => ({
    name,
    input,
    output,
    marker: ['n'],
    handle(entries, step) {
      for (const entry of entries) {
        const n = entry.text('n');
        if (entry.has('bad')) {
          step.deadLetter(entry, 'invalid_payload', new Rejection('invalid_payload', `bad ${n}`));
          continue;
        }
        const skip = entry.optionalText('skip');
        if (skip !== undefined) step.sendFor(entry, { n, skip });
        else step.sendFor(entry, entry.has('own') ? { n, traceparent: TRACE_B } : { n });
        step.ack(entry);
      }
    },
  });
}

const inputs: Fields[] = [
  { n: '1', received_at: '1000', traceparent: TRACE_A },
  { n: '2', received_at: '2000', traceparent: TRACE_A, own: '1' },
  { n: '3', received_at: '3000', traceparent: TRACE_A, bad: '1' },
  { n: '4' },
];

/** The output as plain objects, without stream ids. */
async function outputOf(stream: string): Promise<Record<string, string>[]> {
  return (await readAll(fx.redis, stream)).map((e) =>
    Object.fromEntries([...e.fields].map(([k, v]) => [k, v.toString('utf8')])),
  );
}

const expected = [
  { n: '1', received_at: '1000', traceparent: TRACE_A },
  { n: '2', received_at: '2000', traceparent: TRACE_B },
  { n: '3', skip: 'invalid_payload', received_at: '3000', traceparent: TRACE_A },
  { n: '4' },
];

describe('fields the runtime carries', () => {
  it('go from each input to what is sent for it and to its skip marker; a value the stage sets wins', async () => {
    const { prefix, keys } = fx.freshPrefix('carried-one');
    await addEntries(fx.redis, keys.stream('in'), inputs);
    await startStage(tagStage('tag', 'in', 'out'), testConfig(prefix));
    await eventually(() => drained(fx.redis, keys.stream('in'), 'tag'));
    expect(await outputOf(keys.stream('out'))).toEqual(expected);
  });

  it('go through a chain in memory as they would through its streams', async () => {
    const { prefix, keys } = fx.freshPrefix('carried-chain');
    await addEntries(fx.redis, keys.stream('in'), inputs);
    await startStage(
      [tagStage('first', 'in', 'middle'), tagStage('second', 'middle', 'out')],
      testConfig(prefix),
    );
    await eventually(() => drained(fx.redis, keys.stream('in'), 'first'));
    expect(await outputOf(keys.stream('out'))).toEqual(expected);
    expect(await fx.redis.xlen(keys.stream('middle'))).toBe(0);
  });
});
