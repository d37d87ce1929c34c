/** Space and topic ids are 16 bytes, addresses 32; everywhere they travel as lowercase hex. */
const HEX = /^[0-9a-f]*$/;

/** Accepts `0x…`, dashed UUID form and any case; returns lowercase hex or null when malformed. */
export function normalizeHex(raw: string, bytes: number): string | null {
  let s = raw.trim().toLowerCase();
  if (s.startsWith('0x')) s = s.slice(2);
  if (bytes === 16 && s.length === 36) s = s.replace(/-/g, '');
  return s.length === bytes * 2 && HEX.test(s) ? s : null;
}

export const compareIds = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
