/**
 * The `atlas` child processes of one test pipeline, by name: start (a process with the door gets
 * a port of its own and is waited for until it answers /health), kill -9, restart with the
 * arguments and settings it had, stop all, and tell which exited on their own. E2EPipeline and
 * GraphPipeline extend it.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Redis } from 'ioredis';
import { groupsOf } from '../../pipeline/backlog.ts';
import type { Keys } from '../../pipeline/keys.ts';
import { eventually } from './eventually.ts';
import { request } from './http.ts';
import { type Child, spawnAtlas } from './processes.ts';

interface Proc {
  child: Child;
  args: string[];
  env: Record<string, string>;
  url?: string;
}

/** How often a door that lost its port to another process is started again on another. */
const PORT_RETRIES = 5;
/** How long a door may take to answer /health (a loaded 2-core machine is slow). */
const HEALTH_TIMEOUT_MS = 60_000;

export class PipelineProcesses {
  /** Settings every process of this pipeline gets. */
  readonly env: Record<string, string>;
  private readonly procs = new Map<string, Proc>();
  private nextDoor = 0;

  constructor(env: Record<string, string>) {
    this.env = env;
  }

  /**
   * Starts `atlas <args>` as process `name`. A process with the door (`up`, or the ingest stage)
   * gets a free port and this waits until the door answers /health — from this process, not
   * another one that took the port meanwhile (a door that lost its port exits; it is retried on
   * another).
   */
  async start(name: string, args: string[], env: Record<string, string> = {}): Promise<Child> {
    const existing = this.procs.get(name);
    if (existing && !existing.child.exit) throw new Error(`process ${name} is running already`);
    const door = args[0] === 'up' || args.includes('ingest');
    for (let attempt = 0; ; attempt++) {
      const port = door ? await doorPort() : 0;
      const child = spawnAtlas(args, {
        ...this.env,
        ...env,
        ...(port ? { ATLAS_HTTP_PORT: String(port) } : {}),
      });
      const proc: Proc = { child, args, env };
      this.procs.set(name, proc);
      if (!port) return child;
      const url = `http://127.0.0.1:${port}`;
      proc.url = url;
      try {
        await eventually(
          async () => {
            if (child.exit)
              throw new Error(`${name} exited: ${JSON.stringify(child.exit)}\n${child.output()}`);
            if ((await request(`${url}/health`)).status !== 200) return false;
            return (await listensOn(child.pid, port)) !== false;
          },
          HEALTH_TIMEOUT_MS,
          50,
        );
        return child;
      } catch (err) {
        if (attempt < PORT_RETRIES && /EADDRINUSE/.test(child.output())) continue;
        throw err;
      }
    }
  }

  child(name: string): Child {
    const proc = this.procs.get(name);
    if (!proc) throw new Error(`no process ${name}`);
    return proc.child;
  }

  /** kill -9 of process `name`; resolves once it is gone. */
  async kill9(name: string): Promise<void> {
    await this.child(name).kill9();
  }

  /** Starts process `name` again with the arguments and settings it had. */
  async restart(name: string): Promise<Child> {
    const proc = this.procs.get(name);
    if (!proc) throw new Error(`no process ${name}`);
    if (!proc.child.exit) await proc.child.kill9();
    return this.start(name, proc.args, proc.env);
  }

  /** kill -9 of every process of this pipeline. */
  async stop(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.child.kill9()));
  }

  /** Failures of processes that exited without being killed by the test. */
  crashes(): string[] {
    return [...this.procs.entries()]
      .filter(([, p]) => p.child.exit && p.child.exit.signal !== 'SIGKILL')
      .map(([name, p]) => `${name}: ${JSON.stringify(p.child.exit)}\n${p.child.output()}`);
  }

  /** Output of every process (for failure messages). */
  output(): string {
    return [...this.procs.entries()].map(([name, p]) => `=== ${name}\n${p.child.output()}`).join('\n');
  }

  /** The door of process `name` (undefined when it has none). */
  urlOf(name: string): string | undefined {
    return this.procs.get(name)?.url;
  }

  /** A door, round-robin over the running ones. */
  doorUrl(): string {
    const doors = [...this.procs.values()].flatMap((p) => (p.url && !p.child.exit ? [p.url] : []));
    if (doors.length === 0) throw new Error('no ingest process is running');
    return doors[this.nextDoor++ % doors.length]!;
  }

  /**
   * Waits until `notYet` answers null (it answers why not yet), failing at once when a process
   * crashes.
   */
  async waitUntil(
    what: string,
    notYet: () => Promise<string | null>,
    timeoutMs: number,
    intervalMs: number,
  ): Promise<void> {
    await eventually(
      async () => {
        const crashed = this.crashes();
        if (crashed.length > 0) throw new Error(`a process crashed:\n${crashed.join('\n')}`);
        const why = await notYet();
        if (why) throw new Error(`pipeline not ${what}: ${why}`);
        return true;
      },
      timeoutMs,
      intervalMs,
    );
  }

  /** Name of the running process with this pid (null when there is none). */
  nameOf(pid: number | null): string | null {
    for (const [name, p] of this.procs) if (p.child.pid === pid && !p.child.exit) return name;
    return null;
  }
}

/** The pid in the consumer name of a singleton stage's lease holder (null when the lease is free). */
export async function leaseHolderPid(redis: Redis, keys: Keys, stage: string): Promise<number | null> {
  // The worker's consumer name is `<host>-<pid>-<6 hex>` (pipeline/worker.ts).
  const holder = await redis.get(`${keys.of('lease', stage)}:holder`);
  const pid = holder?.match(/-(\d+)-[0-9a-f]{6}$/)?.[1];
  return pid === undefined ? null : Number(pid);
}

/**
 * Why not every (stream, group) link has been read and acknowledged in full by the processes'
 * consumer groups; null when all have.
 */
export async function unfinishedLink(
  redis: Redis,
  keys: Keys,
  links: Array<[stream: string, group: string]>,
): Promise<string | null> {
  for (const [name, group] of links) {
    const stream = keys.stream(name);
    const g = (await groupsOf(redis, stream)).find((x) => x.name === group);
    if (!g) return `no group ${group} on ${stream} yet`;
    if (g.pending > 0) return `${group}: ${g.pending} pending`;
    if (g.lag === null) {
      const [last] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1)) as [string, string[]][];
      if (last && last[0] !== g.lastDeliveredId) return `${group}: unread entries`;
    } else if (g.lag > 0) return `${group}: lag ${g.lag}`;
  }
  return null;
}

/** Ports this test process handed out: never twice. */
const handedOut = new Set<number>();

/**
 * A port nothing listens on, picked below the kernel's ephemeral range — where the bind-to-0
 * ports of other processes (and other test files' freePort()) land — so races are rare.
 */
async function doorPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/**
 * Whether process `pid` holds the listening socket of `port` (Linux /proc); undefined where
 * that cannot be told.
 */
export async function listensOn(pid: number, port: number): Promise<boolean | undefined> {
  try {
    const inodes = new Set<string>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      const text = await readFile(table, 'utf8').catch(() => '');
      for (const line of text.split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        const local = cols[1]?.split(':').at(-1);
        if (local && Number.parseInt(local, 16) === port && cols[3] === '0A' && cols[9]) inodes.add(cols[9]);
      }
    }
    for (const fd of await readdir(`/proc/${pid}/fd`)) {
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode && inodes.has(inode)) return true;
    }
    return false;
  } catch {
    return undefined;
  }
}
