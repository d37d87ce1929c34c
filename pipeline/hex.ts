/** Binary ids written as hex: `0x…`, any case, and (for 16-byte ids) the dashed UUID form. */
const HEX = /^[0-9a-f]*$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Returns the id as lowercase hex of `bytes` bytes, or null when it is not one. */
export function normalizeHex(raw: string, bytes: number): string | null {
  let s = raw.trim().toLowerCase();
  if (s.startsWith('0x')) s = s.slice(2);
  else if (bytes === 16 && UUID.test(s)) s = s.replace(/-/g, '');
  return s.length === bytes * 2 && HEX.test(s) ? s : null;
}
