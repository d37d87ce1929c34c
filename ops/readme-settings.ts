#!/usr/bin/env node
/**
 * Writes the configuration table of README.md (between the settings markers) from the settings
 * in pipeline/config.ts, aligned; `--check` exits 1 when the README's table is not that.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { settingsTable } from '../pipeline/config.ts';

const README = join(import.meta.dirname, '..', 'README.md');
const START = '<!-- settings:start (npm run docs:settings) -->';
const END = '<!-- settings:end -->';

/** The Markdown table with its columns padded to one width each. */
export function alignedSettingsTable(): string {
  const rows = settingsTable()
    .split('\n')
    .map((line) =>
      line
        .slice(1, -1)
        .split(' | ')
        .map((cell) => cell.trim()),
    );
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r, n) =>
      n === 1
        ? `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`
        : `| ${r.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`,
    )
    .join('\n');
}

export function readmeWithSettings(readme: string): string {
  const from = readme.indexOf(START);
  const to = readme.indexOf(END);
  if (from < 0 || to < from) throw new Error(`README.md has no ${START} … ${END} section`);
  return `${readme.slice(0, from + START.length)}\n${alignedSettingsTable()}\n${readme.slice(to)}`;
}

if (import.meta.main) {
  const readme = readFileSync(README, 'utf8');
  const wanted = readmeWithSettings(readme);
  if (process.argv.includes('--check')) {
    if (wanted !== readme) {
      process.stderr.write('README.md: the configuration table is out of date; run npm run docs:settings\n');
      process.exit(1);
    }
  } else writeFileSync(README, wanted);
}
