/**
 * What the image adds to its Node base, measured without a container engine: the package as npm
 * packs it (dist/, package.json, LICENSE — the runtime stage copies dist/ and those two) and the
 * production dependencies installed from the lockfile the way the Dockerfile's deps stage does
 * (`npm ci --omit=dev --ignore-scripts`). Reported on disk and as a gzip-compressed tar, about
 * what a registry stores for those layers. The base image (node:24-bookworm-slim, less npm) is
 * not part of the measurement.
 *
 * Usage: node ops/image-contents.ts   (runs `npm pack`, whose prepack builds dist/)
 */
import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');

export interface ImageContents {
  files: number;
  bytes: number;
  compressedBytes: number;
  distBytes: number;
  nodeModulesBytes: number;
  /** Top-level packages of node_modules (scoped ones as @scope/name). */
  packages: string[];
  largest: { name: string; bytes: number }[];
}

/** Lays out /app as the runtime stage would, from a packed tarball, and measures it. */
export async function measureImageContents(tarball: string, root = ROOT): Promise<ImageContents> {
  const work = await mkdtemp(join(tmpdir(), 'atlas-image-'));
  try {
    const app = join(work, 'app');
    await mkdir(app);
    await run('tar', ['-xzf', tarball, '-C', app, '--strip-components=1']);
    // the tarball's own files beyond these three are not copied into the image
    for (const name of await readdir(app))
      if (!['dist', 'package.json', 'LICENSE'].includes(name)) await rm(join(app, name), { recursive: true });
    await copyFile(join(root, 'package-lock.json'), join(app, 'package-lock.json'));
    await run(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
      {
        cwd: app,
      },
    );
    await rm(join(app, 'package-lock.json'));
    const archive = join(work, 'app.tar.gz');
    await run('tar', ['-czf', archive, '-C', app, '.']);
    const nodeModules = join(app, 'node_modules');
    const packages = await topLevelPackages(nodeModules);
    const sizes = await Promise.all(
      packages.map(async (name) => ({ name, ...(await du(join(nodeModules, name))) })),
    );
    const all = await du(app);
    return {
      files: all.files,
      bytes: all.bytes,
      compressedBytes: (await stat(archive)).size,
      distBytes: (await du(join(app, 'dist'))).bytes,
      nodeModulesBytes: (await du(nodeModules)).bytes,
      packages,
      largest: sizes
        .sort((a, b) => b.bytes - a.bytes)
        .slice(0, 10)
        .map(({ name, bytes }) => ({ name, bytes })),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function topLevelPackages(nodeModules: string): Promise<string[]> {
  const names: string[] = [];
  for (const name of await readdir(nodeModules)) {
    if (name.startsWith('.')) continue; // .bin, .package-lock.json
    if (name.startsWith('@'))
      for (const inner of await readdir(join(nodeModules, name))) names.push(`${name}/${inner}`);
    else names.push(name);
  }
  return names.sort();
}

/** Files and their apparent size under a path, symlinks counted as links, not followed. */
async function du(path: string): Promise<{ files: number; bytes: number }> {
  const info = await lstat(path);
  if (!info.isDirectory()) return { files: 1, bytes: info.size };
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(path)) {
    const sub = await du(join(path, entry));
    files += sub.files;
    bytes += sub.bytes;
  }
  return { files, bytes };
}

const MB = 1024 * 1024;

if (import.meta.main) {
  const dir = await mkdtemp(join(tmpdir(), 'atlas-pack-'));
  try {
    const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT });
    const [{ filename }] = JSON.parse(packed.stdout) as [{ filename: string }];
    const c = await measureImageContents(join(dir, filename));
    console.log(
      `image contents beyond the Node base: ${c.files} files, ${(c.bytes / MB).toFixed(1)} MB on disk`,
    );
    console.log(`  compressed (tar.gz): ${(c.compressedBytes / MB).toFixed(1)} MB`);
    console.log(
      `  dist/: ${(c.distBytes / MB).toFixed(1)} MB; node_modules/: ${(c.nodeModulesBytes / MB).toFixed(1)} MB`,
    );
    console.log(`  ${c.packages.length} production packages; the largest:`);
    for (const p of c.largest) console.log(`    ${p.name.padEnd(28)} ${(p.bytes / MB).toFixed(1)} MB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
