/**
 * Child processes: `node ops/cli/atlas.ts …` and the test stage runner, with their output
 * captured line by line (JSON logs), waits for a log line, kill -9, and SIGTERM with the exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { eventually, withTimeout } from './eventually.ts';
import { REDIS_URL } from './redis.ts';

export const ROOT = join(import.meta.dirname, '..', '..');
export const ATLAS = join(ROOT, 'ops', 'cli', 'atlas.ts');
export const STAGE_RUNNER = join(import.meta.dirname, 'stage-runner.ts');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type LogLine = Record<string, unknown> & { msg?: string; consumer?: string };
/** A log line's msg (equal, or matching), or a test of the whole line. */
export type LogMatch = string | RegExp | ((line: LogLine) => boolean);

const running = new Set<Child>();

export class Child {
  readonly proc: ChildProcess;
  readonly name: string;
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;

  constructor(name: string, args: string[], env: Record<string, string>) {
    this.name = name;
    this.proc = spawn(process.execPath, args, {
      cwd: ROOT,
      // Many processes per test: the operator listener is off unless a test gives it a port.
      env: {
        ...process.env,
        REDIS_URL,
        ATLAS_LOG_JSON: '1',
        LOG_LEVEL: 'info',
        ATLAS_METRICS_PORT: '0',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
    });
    running.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        running.delete(this);
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** The JSON log lines written so far (other lines are skipped). */
  get logs(): LogLine[] {
    return this.stdout.split('\n').flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        return [JSON.parse(line) as LogLine];
      } catch {
        return [];
      }
    });
  }

  /** Log lines whose msg matches, in order. */
  logsMatching(msg: LogMatch): LogLine[] {
    return this.logs.filter((l) =>
      typeof msg === 'string' ? l.msg === msg : typeof msg === 'function' ? msg(l) : msg.test(String(l.msg)),
    );
  }

  /** Waits for a log line (its msg equal to / matching `msg`) and returns it. */
  async waitForLog(msg: LogMatch, timeoutMs = 15_000, after = 0): Promise<LogLine> {
    return eventually(() => {
      if (this.exit) throw new Error(`${this.name} exited (${JSON.stringify(this.exit)}):\n${this.output()}`);
      const found = this.logsMatching(msg).slice(after);
      if (found.length === 0) throw new Error(`${this.name}: no log ${msg} yet:\n${this.output()}`);
      return found[0]!;
    }, timeoutMs);
  }

  /** The consumer name of the stage worker in this process (from its logs). */
  async consumer(timeoutMs = 15_000): Promise<string> {
    return eventually(() => {
      const found = this.logs.find((l) => typeof l.consumer === 'string')?.consumer;
      if (!found) throw new Error(`${this.name}: no consumer name in its logs yet:\n${this.output()}`);
      return found;
    }, timeoutMs);
  }

  /** SIGSTOP: the process freezes (a long GC pause, a stalled VM); `resume` thaws it. */
  pause(): void {
    this.proc.kill('SIGSTOP');
  }

  resume(): void {
    this.proc.kill('SIGCONT');
  }

  kill9(): Promise<Exit> {
    if (!this.exit) this.proc.kill('SIGKILL');
    return this.exited;
  }

  /** SIGTERM, then waits for the exit; `ms` is how long the stop took. */
  async term(timeoutMs = 20_000): Promise<Exit & { ms: number }> {
    const started = performance.now();
    this.proc.kill('SIGTERM');
    const exit = await withTimeout(
      this.exited,
      timeoutMs,
      `${this.name} did not exit within ${timeoutMs} ms after SIGTERM`,
    );
    return { ...exit, ms: performance.now() - started };
  }

  output(): string {
    return `--- stdout\n${this.stdout.slice(-4000)}\n--- stderr\n${this.stderr.slice(-4000)}`;
  }
}

/** `node ops/cli/atlas.ts <args>` as a long-running process. */
export function spawnAtlas(args: string[], env: Record<string, string> = {}): Child {
  return new Child(`atlas ${args.join(' ')}`, [ATLAS, ...args], env);
}

/** A test stage (see stage-runner.ts) run by the real runtime in its own process. */
export function spawnStage(kind: string, env: Record<string, string> = {}): Child {
  return new Child(`stage ${kind}`, [STAGE_RUNNER, kind], env);
}

/** Runs `atlas <args>` to completion. */
export async function runAtlas(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = new Child(`atlas ${args.join(' ')}`, [ATLAS, ...args], env);
  const exit = await withTimeout(
    child.exited,
    timeoutMs,
    `atlas ${args.join(' ')} did not finish within ${timeoutMs} ms`,
  ).catch(async (err: unknown) => {
    await child.kill9();
    throw err;
  });
  return { code: exit.code, stdout: child.stdout, stderr: child.stderr };
}

/** Kills every child still running (afterEach/afterAll safety net). */
export async function killChildren(): Promise<void> {
  await Promise.all([...running].map((c) => c.kill9()));
}
