/**
 * Summarises V8 CPU profiles (.cpuprofile, e.g. those BENCH_CPU_PROF leaves): self time by
 * function and by module, as shares of the busy time (idle excluded), so profiles of runs on a
 * machine shared with others can be compared.
 *
 *   node load/profile-top.ts <file or directory of .cpuprofile>… [--top 25] [--events N]
 *
 * A directory's profiles are summed (one process each: `atlas up` leaves one). With --events
 * (the events the profiled run handled) it also prints the busy CPU time per event. Module: the
 * npm package for files under node_modules, the project's top folder (pipeline/, stages/<name>/)
 * for the project's own files, node's internals as `node:<file>`, and V8's own buckets
 * ((garbage collector), (program), (idle)) as they are.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const ROOT = resolve(import.meta.dirname, '..');
const IDLE = '(idle)';

/** Microseconds of self time per call frame, summed over every profile given. */
function selfTimes(profile: CpuProfile, into: Map<string, { frame: CallFrame; us: number }>): void {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  // timeDeltas[i] is the time before sample i: charged to the sample (V8's own convention).
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!;
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}`;
    const slot = into.get(key) ?? { frame, us: 0 };
    slot.us += Math.max(0, profile.timeDeltas[i] ?? 0);
    into.set(key, slot);
  });
}

function moduleOf(frame: CallFrame): string {
  const url = frame.url;
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = path.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  const rel = relative(ROOT, path).split('/');
  if (rel[0] === 'stages' && rel.length > 2) return `stages/${rel[1]}`;
  return rel.length > 1 ? `${rel[0]}/` : rel[0]!;
}

function where(frame: CallFrame): string {
  if (!frame.url) return '';
  const path = frame.url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  const shown = nm >= 0 ? path.slice(nm + 'node_modules/'.length) : relative(ROOT, path);
  return `${shown}:${frame.lineNumber + 1}`;
}

function files(args: string[]): string[] {
  return args.flatMap((a) =>
    statSync(a).isDirectory()
      ? readdirSync(a)
          .filter((f) => f.endsWith('.cpuprofile'))
          .map((f) => join(a, f))
      : [a],
  );
}

function option(name: string): number | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : undefined;
}

function main(): void {
  const paths = files(
    process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--')),
  );
  if (paths.length === 0) {
    console.error('usage: node load/profile-top.ts <file or directory>… [--top N] [--events N]');
    process.exitCode = 2;
    return;
  }
  const top = option('--top') ?? 25;
  const events = option('--events');
  const times = new Map<string, { frame: CallFrame; us: number }>();
  let wallUs = 0;
  for (const path of paths) {
    const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
    wallUs += profile.endTime - profile.startTime;
    selfTimes(profile, times);
  }
  const all = [...times.values()];
  const busyUs = all.filter((t) => t.frame.functionName !== IDLE).reduce((s, t) => s + t.us, 0);
  const pct = (us: number) => `${((100 * us) / busyUs).toFixed(1).padStart(5)}%`;
  console.log(
    `${paths.length} profile(s), ${(wallUs / 1e6).toFixed(1)} s of wall time, ${(busyUs / 1e6).toFixed(2)} s busy (${((100 * busyUs) / wallUs).toFixed(0)}% of one core)` +
      (events ? `; ${(busyUs / events).toFixed(0)} µs of CPU per event (${events} events)` : ''),
  );
  const modules = new Map<string, number>();
  for (const t of all) {
    if (t.frame.functionName === IDLE) continue;
    const m = moduleOf(t.frame);
    modules.set(m, (modules.get(m) ?? 0) + t.us);
  }
  console.log('\nSelf time by module (share of busy time)');
  for (const [m, us] of [...modules].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${pct(us)}  ${m}`);
  console.log('\nSelf time by function (share of busy time)');
  for (const t of all
    .filter((t) => t.frame.functionName !== IDLE)
    .sort((a, b) => b.us - a.us)
    .slice(0, top))
    console.log(`${pct(t.us)}  ${t.frame.functionName || '(anonymous)'}  ${where(t.frame)}`);
}

main();
