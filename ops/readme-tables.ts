/** The README's generated tables (settings, metrics): aligned Markdown between two markers. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const README = join(import.meta.dirname, '..', 'README.md');

/** The Markdown table with its columns padded to one width each. */
export function alignTable(table: string): string {
  const rows = table.split('\n').map((line) =>
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

/** The README with `body` between the `start` and `end` markers. */
export function withSection(readme: string, start: string, end: string, body: string): string {
  const from = readme.indexOf(start);
  const to = readme.indexOf(end);
  if (from < 0 || to < from) throw new Error(`README.md has no ${start} … ${end} section`);
  return `${readme.slice(0, from + start.length)}\n${body}\n${readme.slice(to)}`;
}

/**
 * A generator's command line: writes the README as `update` makes it, or with `--check` exits 1
 * (saying `how` to fix it) when the README is not that.
 */
export function writeOrCheck(update: (readme: string) => string, what: string, how: string): void {
  const readme = readFileSync(README, 'utf8');
  const wanted = update(readme);
  if (!process.argv.includes('--check')) writeFileSync(README, wanted);
  else if (wanted !== readme) {
    process.stderr.write(`README.md: the ${what} table is out of date; run ${how}\n`);
    process.exit(1);
  }
}
