/**
 * The published package as a user gets it: `npm pack` (prepack builds dist/), `npm install` of
 * the tarball into an empty folder, the `atlas` bin, and the client imported by its package
 * name, type-checked against the shipped declarations and posting to a door that the installed
 * CLI runs (so the compiled code, its Lua scripts and protobuf code are what is exercised).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measureImageContents } from '../../ops/image-contents.ts';
import { streams } from '../../stages/streams.ts';
import { Child, ROOT } from '../support/processes.ts';
import { freePort, useRedis } from '../support/redis.ts';

const run = promisify(execFile);
const fx = useRedis('pack');
const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };

let dir: string;
let tarball: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'atlas-pack-'));
  const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT });
  const [info] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
  tarball = join(dir, info.filename);
  await writeFile(join(dir, 'files.json'), JSON.stringify(info.files.map((f) => f.path)));
  // --prefer-offline: the dependencies are in npm's cache after `npm ci`; the registry only fills gaps
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: dir });
}, 180_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('ships compiled code, declarations, Lua scripts and protobuf code, without tests or sources', async () => {
    const files = JSON.parse(await readFile(join(dir, 'files.json'), 'utf8')) as string[];
    for (const f of [
      'package.json',
      'LICENSE',
      'CHANGELOG.md',
      'README.md',
      'dist/ops/cli/atlas.js',
      'dist/clients/typescript/index.js',
      'dist/clients/typescript/index.d.ts',
      'dist/pipeline/scripts/commit.lua',
      'dist/pipeline/scripts/lib/blobs.lua',
      'dist/proto/gen/atlas.js',
      'dist/proto/gen/atlas.d.ts',
    ])
      expect(files).toContain(f);
    expect(files.filter((f) => f.startsWith('test/') || f.endsWith('.test.js'))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
  });

  it('installs an `atlas` bin that answers --version and --help', async () => {
    const v = await run('npx', ['--no-install', 'atlas', '--version'], { cwd: dir });
    expect(v.stdout.trim()).toBe(version);
    const help = await run('npx', ['--no-install', 'atlas', '--help'], { cwd: dir });
    expect(help.stdout).toMatch(/Usage: atlas/);
    expect(help.stdout).toMatch(/kafka/);
  });

  it('exports the client, the protobuf code and the decoders by package name', async () => {
    const script = `
      const client = await import('atlas-pipeline/client');
      const root = await import('atlas-pipeline');
      const { topology } = await import('atlas-pipeline/protobuf');
      const { decodeCanonicalGraphUpdated } = await import('atlas-pipeline/decode');
      const { fromWire } = await import('atlas-pipeline/graph');
      console.log(JSON.stringify({
        producer: typeof client.AtlasProducer,
        same: root.AtlasProducer === client.AtlasProducer,
        proto: typeof topology.CanonicalGraphUpdated.decode,
        decode: typeof decodeCanonicalGraphUpdated,
        graph: typeof fromWire,
      }));`;
    const out = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    expect(JSON.parse(out.stdout)).toEqual({
      producer: 'function',
      same: true,
      proto: 'function',
      decode: 'function',
      graph: 'function',
    });
  });

  it('type-checks a producer against the shipped declarations', async () => {
    await writeFile(
      join(dir, 'produce.ts'),
      `import { AtlasProducer, type AtlasEvent } from 'atlas-pipeline/client';
const event: AtlasEvent = {
  event_type: 'space.trust_extended',
  payload: {
    source_space_id: '0x' + 'a'.repeat(32),
    extension: { kind: 'verified', target_space_id: 'b'.repeat(32) },
    meta: { block_number: 1, block_timestamp: '2', tx_hash: '0x1', cursor: 'c' },
  },
};
// @ts-expect-error not an event type of the door
const wrong: AtlasEvent = { event_type: 'space.deleted', payload: {} };
// @ts-expect-error a payload of another event type
const mixed: AtlasEvent = { event_type: 'space.created', payload: event.payload };
const accepted: Promise<{ seq: number; duplicate: boolean }> = new AtlasProducer({ url: 'http://x' }).send(event);
export { accepted, mixed, wrong };
`,
    );
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          target: 'es2024',
          lib: ['es2024', 'dom'],
          types: [],
          strict: true,
          noEmit: true,
          skipLibCheck: true,
        },
        files: ['produce.ts'],
      }),
    );
    const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
    const checked = await run(tsc, ['-p', dir], { cwd: dir }).catch((err: { stdout: string }) => err);
    expect(checked.stdout).toBe('');
  });

  it('runs a door from the installed CLI that the installed client posts to', async () => {
    const port = await freePort();
    const door = new Child(
      'installed atlas run ingest',
      [join(dir, 'node_modules/atlas-pipeline/dist/ops/cli/atlas.js'), 'run', 'ingest'],
      {
        ATLAS_PREFIX: fx.prefix,
        ATLAS_HTTP_PORT: String(port),
      },
    );
    try {
      await door.waitForLog('ingest listening', 30_000);
      const script = `
        import { AtlasProducer } from 'atlas-pipeline/client';
        const producer = new AtlasProducer({ url: 'http://127.0.0.1:${port}', source: 'pack-test' });
        const accepted = await producer.send({
          event_type: 'space.created',
          payload: {
            space_id: '${'1'.repeat(32)}',
            topic_id: '${'2'.repeat(32)}',
            space_type: { kind: 'personal', owner: '${'3'.repeat(64)}' },
            meta: { block_number: 1, block_timestamp: 1, tx_hash: '0x1', cursor: 'c' },
          },
        });
        await producer.close();
        console.log(JSON.stringify(accepted));`;
      const out = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
      const accepted = JSON.parse(out.stdout) as { event_id: string; seq: number; duplicate: boolean };
      expect(accepted).toMatchObject({ seq: 1, duplicate: false });
      expect(accepted.event_id).toMatch(/^[\da-f-]{36}$/);
      expect(await fx.redis.xlen(fx.keys.stream(streams.ingest))).toBe(1);
    } finally {
      await door.term();
    }
  });

  it('makes image contents of compiled code and production dependencies only, small enough for the image budget', async () => {
    const c = await measureImageContents(tarball);
    const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
    console.log(
      `image contents beyond the Node base: ${c.files} files, ${mb(c.bytes)} on disk, ${mb(c.compressedBytes)} compressed ` +
        `(dist ${mb(c.distBytes)}, node_modules ${mb(c.nodeModulesBytes)}, ${c.packages.length} packages)`,
    );
    for (const dep of ['fastify', 'ioredis', 'kafkajs', 'protobufjs', 'zod', 'commander'])
      expect(c.packages).toContain(dep);
    for (const dev of [
      'typescript',
      'vitest',
      '@biomejs/biome',
      'protobufjs-cli',
      'autocannon',
      'fast-check',
    ])
      expect(c.packages).not.toContain(dev);
    // the slim Node base is most of the 100 MB (compressed) budget; what we add must stay small
    expect(c.compressedBytes).toBeLessThan(20 * 1024 * 1024);
  });
});

describe('the Dockerfile', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'));

  it('copies only paths that exist and that .dockerignore lets through', () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(' '));
    expect(sources.length).toBeGreaterThan(5);
    for (const src of sources) {
      expect(existsSync(join(ROOT, src)), src).toBe(true);
      expect(
        ignored.some((i) => src === i || src.startsWith(`${i}/`)),
        src,
      ).toBe(false);
    }
  });

  it('generates the protobuf code, installs production dependencies, runs unprivileged under tini with a healthcheck', () => {
    expect(dockerfile).toMatch(/proto\/generate\.sh/);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/^USER 1000:1000$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\n.*dist\/ops\/cli\/healthcheck\.js/m);
    expect(dockerfile).toMatch(
      /^ENTRYPOINT \["\/usr\/bin\/tini", "--", "node", "dist\/ops\/cli\/atlas\.js"\]$/m,
    );
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', 'proto/gen', '.git']));
  });
});
