/**
 * A cheap look at how deeply a JSON text nests, before it is parsed: parsing (and every
 * recursive walk after it) of a hostile 5,000-level body would otherwise blow the stack.
 * One pass over the text; string contents are skipped with indexOf, so the long strings
 * of a large body cost almost nothing.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPENERS = new Set([0x5b, 0x7b]); // [ {
const CLOSERS = new Set([0x5d, 0x7d]); // ] }

/** True when `text` nests arrays and objects more than `max` levels deep. */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) i = closingQuote(text, i);
    else if (OPENERS.has(c)) {
      depth++;
      if (depth > max) return true;
    } else if (CLOSERS.has(c)) depth--;
  }
  return false;
}

/** Index of the quote that ends the string opened at `open` (text.length when none does). */
function closingQuote(text: string, open: number): number {
  let at = open;
  for (;;) {
    at = text.indexOf('"', at + 1);
    if (at < 0) return text.length;
    let slashes = 0;
    while (text.charCodeAt(at - 1 - slashes) === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return at;
  }
}
