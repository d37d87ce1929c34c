/**
 * How the CLI prints: tables (cli-table3), JSON for --json, and colour only for a terminal that
 * wants it (never into a pipe, never with NO_COLOR set), so scripts parse what they read.
 */
import Table from 'cli-table3';

/** Colour only on a terminal, and only without NO_COLOR (https://no-color.org: any value). */
export function colourWanted(stream: NodeJS.WriteStream = process.stdout): boolean {
  return stream.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
}

/** A table with a header row; plain borders-less output when not on a terminal. */
export function table(head: string[], rows: Array<Array<string | number>>): string {
  const boxed = colourWanted();
  const t = new Table({
    // Bold by hand: cli-table3's colours follow @colors/colors' own detection, which turns them
    // off wherever CI is set, whatever the terminal.
    head: boxed ? head.map((h) => `\u001b[1m${h}\u001b[22m`) : head,
    style: boxed
      ? { head: [], border: [], compact: true }
      : { head: [], border: [], compact: true, 'padding-left': 0, 'padding-right': 0 },
    ...(boxed ? {} : { chars: plainChars }),
  });
  for (const row of rows) t.push(row.map(String));
  const text = t.toString();
  return boxed ? text : text.replace(/ +$/gm, '');
}

// Columns separated by two spaces, no box: what `grep` and `awk` expect from a pipe.
const plainChars = {
  top: '',
  'top-mid': '',
  'top-left': '',
  'top-right': '',
  bottom: '',
  'bottom-mid': '',
  'bottom-left': '',
  'bottom-right': '',
  left: '',
  'left-mid': '',
  mid: '',
  'mid-mid': '',
  right: '',
  'right-mid': '',
  middle: '  ',
};

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A warning for the operator: stderr, so stdout stays what was asked for. */
export function warn(text: string): void {
  process.stderr.write(`atlas: warning: ${text}\n`);
}

export function ageOf(ms: number | null): string {
  return ms === null ? '-' : `${(ms / 1000).toFixed(1)}s`;
}
