/**
 * Builds dist/, the published package: tsc emits JavaScript and declarations (imports rewritten
 * from .ts to .js), then the files tsc does not emit but the code reads at run time are copied
 * next to it — the Lua scripts (read via import.meta.dirname) and the generated protobuf code.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist');

/** Copied as they are, relative to the root: the same layout in dist/ keeps relative paths working. */
const ASSETS = ['pipeline/scripts', 'proto/gen'];

rmSync(DIST, { recursive: true, force: true });
execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
for (const dir of ASSETS) {
  cpSync(join(ROOT, dir), join(DIST, dir), {
    recursive: true,
    // .tmp.* are generate.sh's scratch folders
    filter: (src) => !src.includes('.tmp.'),
  });
}
