/** Configs for in-process components: the real parser, with test defaults and overrides. */
import { pino } from 'pino';
import { type Config, parseConfig } from '../../pipeline/config.ts';
import type { Logger } from '../../pipeline/log.ts';
import { REDIS_URL } from './redis.ts';

export type Overrides = Partial<Record<keyof Config, string | number>>;

/** Settings as environment strings (numbers stringified), for parseConfig and child processes. */
export function envOf(overrides: Overrides): Record<string, string> {
  return Object.fromEntries(Object.entries(overrides).map(([k, v]) => [k, String(v)]));
}

export function testConfig(prefix: string, overrides: Overrides = {}): Config {
  return parseConfig({
    REDIS_URL,
    ATLAS_PREFIX: prefix,
    LOG_LEVEL: 'silent',
    ATLAS_BLOCK_MS: '100',
    ...envOf(overrides),
  });
}

/** Logs of in-process components: silent unless ATLAS_TEST_LOG names a level. */
export const testLog: Logger = pino({ level: process.env.ATLAS_TEST_LOG ?? 'silent' });
