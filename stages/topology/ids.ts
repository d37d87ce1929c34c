/** Space and topic ids are 16 bytes, addresses 32; everywhere they travel as lowercase hex. */
export { normalizeHex } from '../../pipeline/hex.ts';

/** Byte order of ids = order of their lowercase hex. */
export const compareIds = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
