#!/usr/bin/env node
/**
 * Writes the configuration table of README.md (between the settings markers) from the settings
 * in pipeline/config.ts, aligned; `--check` exits 1 when the README's table is not that.
 */
import { settingsTable } from '../pipeline/config.ts';
import { alignTable, withSection, writeOrCheck } from './readme-tables.ts';

const START = '<!-- settings:start (npm run docs:settings) -->';
const END = '<!-- settings:end -->';

export function readmeWithSettings(readme: string): string {
  return withSection(readme, START, END, alignTable(settingsTable()));
}

if (import.meta.main) writeOrCheck(readmeWithSettings, 'configuration', 'npm run docs:settings');
