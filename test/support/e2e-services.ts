/**
 * `bash ops/services up|down|status kafka` from a test, for the broker on a given port (the
 * script keeps each port's broker in its own directory under .run/ and serialises calls on it).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './processes.ts';

export interface ServicesRun {
  code: number | null;
  output: string;
  ms: number;
}

export function kafkaService(
  action: 'up' | 'down' | 'status',
  port: number,
  timeoutMs = 180_000,
): Promise<ServicesRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const proc = spawn('bash', [join(ROOT, 'ops', 'services'), action, 'kafka'], {
      cwd: ROOT,
      env: { ...process.env, ATLAS_KAFKA_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    proc.stderr.setEncoding('utf8').on('data', (d: string) => {
      output += d;
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`ops/services ${action} kafka (port ${port}) took over ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    proc.once('error', reject);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: performance.now() - started });
    });
  });
}

/** `up`, failing unless it succeeded. */
export async function kafkaUp(port: number): Promise<ServicesRun> {
  const run = await kafkaService('up', port);
  if (run.code !== 0)
    throw new Error(`ops/services up kafka (port ${port}) exited ${run.code}:\n${run.output}`);
  return run;
}

/** `down`, failing unless it succeeded. */
export async function kafkaDown(port: number): Promise<ServicesRun> {
  const run = await kafkaService('down', port);
  if (run.code !== 0)
    throw new Error(`ops/services down kafka (port ${port}) exited ${run.code}:\n${run.output}`);
  return run;
}
