/** JSON logs (pino); pretty-printed when a person is watching a terminal. */
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(level: string, name = 'atlas'): Logger {
  const pretty = process.stdout.isTTY && process.env.ATLAS_LOG_JSON !== '1';
  return pino({
    name,
    level,
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname' } } }
      : {}),
  });
}
