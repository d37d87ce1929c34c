#!/usr/bin/env node
/**
 * Writes the configuration table of README.md (between the settings markers) from the settings
 * in pipeline/config.ts, aligned; `--check` exits 1 when the README's table is not that.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { settingsTable } from '../pipeline/config.ts';
import { alignTable, withSection } from './readme-tables.ts';

const README = join(import.meta.dirname, '..', 'README.md');
const START = '<!-- settings:start (npm run docs:settings) -->';
const END = '<!-- settings:end -->';

export function readmeWithSettings(readme: string): string {
  return withSection(readme, START, END, alignTable(settingsTable()));
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
