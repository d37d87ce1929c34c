/**
 * The CLI's conventions that need no pipeline: --version, `atlas config` (effective values, where
 * each comes from, secrets masked, exit 2 naming a bad setting), usage errors as exit 2.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { packageVersion } from '../../pipeline/version.ts';
import { ATLAS, ROOT, runAtlas } from '../support/processes.ts';

/** The CLI on a pseudo-terminal (util-linux `script`), as an operator's shell runs it. */
async function onTerminal(args: string, env: Record<string, string> = {}): Promise<string> {
  const { NO_COLOR: _, ...inherited } = process.env;
  const { stdout } = await promisify(execFile)(
    'script',
    ['-qec', `${process.execPath} ${ATLAS} ${args}`, '/dev/null'],
    { cwd: ROOT, env: { ...inherited, TERM: 'xterm', ...env }, timeout: 20_000 },
  );
  return stdout;
}

describe('atlas conventions', () => {
  it('--version prints the package version', async () => {
    const r = await runAtlas(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${packageVersion()}\n`);
  });

  it('config shows the values in effect, which come from the environment, secrets masked', async () => {
    const env = {
      ATLAS_PREFIX: 'cfg-effective',
      ATLAS_BATCH_SIZE: '',
      KAFKA_SASL_PASSWORD: 'hunter2-secret',
      REDIS_URL: 'redis://user:pw-secret@127.0.0.1:6390',
    };
    const [text, json] = await Promise.all([
      runAtlas(['config', '--redis-url', 'redis://u:other-secret@127.0.0.1:6391'], env),
      runAtlas(['config', '--json', '--prefix', 'from-option'], env),
    ]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.split('\n')[0]).toMatch(/^setting\s+value\s+from$/);
    expect(text.stdout).toMatch(/\nATLAS_PREFIX\s+cfg-effective\s+env\n/);
    expect(text.stdout).toMatch(/\nATLAS_BATCH_SIZE\s+200\s+default\n/); // empty counts as unset
    expect(text.stdout).toMatch(/\nREDIS_URL\s+redis:\/\/u:\*\*\*@127\.0\.0\.1:6391\s+env\n/);
    expect(text.stdout).toMatch(/\nKAFKA_SASL_PASSWORD\s+\*\*\*\s+env\n/);
    expect(text.stdout + json.stdout).not.toMatch(/secret/);

    const rows = JSON.parse(json.stdout) as Array<{ name: string; value: string; from: string }>;
    expect(rows.find((r) => r.name === 'ATLAS_PREFIX')).toEqual({
      name: 'ATLAS_PREFIX',
      value: 'from-option',
      from: 'env',
    });
    expect(rows.find((r) => r.name === 'ATLAS_HIGH_WATER')?.from).toBe('default');
  });

  it('config exits 2 naming each bad setting', async () => {
    const r = await runAtlas(['config'], { ATLAS_BATCH_SIZE: 'lots' });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^atlas: invalid settings:\n {2}ATLAS_BATCH_SIZE=lots: /);
  });

  it('colours a table on a terminal only, and never with NO_COLOR', async () => {
    const [terminal, noColour, pipe] = await Promise.all([
      onTerminal('config'),
      onTerminal('config', { NO_COLOR: '1' }),
      runAtlas(['config']),
    ]);
    expect(terminal).toContain('\u001b[1msetting');
    expect(noColour).toMatch(/^setting\s+value\s+from/);
    expect(noColour).not.toContain('\u001b[');
    expect(pipe.stdout).not.toContain('\u001b[');
  });

  it('an unknown command is a usage error (exit 2)', async () => {
    const r = await runAtlas(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });
});
