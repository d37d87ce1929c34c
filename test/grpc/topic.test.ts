/** Topic patterns of a subscription: `*` one dot-separated segment, `**` the rest. */
import { describe, expect, it } from 'vitest';
import { topicMatcher } from '../../stages/subscribe/subscriptions.ts';

describe('topicMatcher', () => {
  it('matches segments, wildcards within a segment, and any rest', () => {
    const cases: Array<[string, string, boolean]> = [
      ['', 'anything.at.all', true],
      ['space.created', 'space.created', true],
      ['space.created', 'space.created.v2', false],
      ['space.*', 'space.trust_extended', true],
      ['space.*', 'space.trust.extended', false],
      ['space.trust_*', 'space.trust_revoked', true],
      ['space.trust_*', 'space.created', false],
      ['kasmina.**', 'kasmina.telemetry.layer.7.health', true],
      ['kasmina.**', 'other.telemetry', false],
      ['kasmina.telemetry.layer.*.health', 'kasmina.telemetry.layer.7.health', true],
      ['kasmina.telemetry.layer.*.health', 'kasmina.telemetry.layer.7.control', false],
      // regex characters in a pattern are literal
      ['a+b.(c)', 'a+b.(c)', true],
      ['a+b.(c)', 'aab.c', false],
    ];
    for (const [pattern, topic, expected] of cases)
      expect(topicMatcher(pattern)(topic), `${pattern} ~ ${topic}`).toBe(expected);
  });
});
