/** JSON logs (pino); pretty-printed when a person is watching a terminal. */
import { type Logger, pino } from 'pino';
import { MASK, redactPaths } from './secrets.ts';

export type { Logger };

export function createLogger(level: string, name = 'atlas'): Logger {
  const pretty = process.stdout.isTTY && process.env.ATLAS_LOG_JSON !== '1';
  return pino({
    name,
    level,
    // a secret logged by mistake (a config object, client options) is masked, not printed
    redact: { paths: redactPaths, censor: MASK },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } } }
      : {}),
  });
}
