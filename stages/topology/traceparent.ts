/** Trace context of outputs that no request caused (a rebuild, a republish). */
import { randomBytes } from 'node:crypto';

/** A fresh, unsampled W3C traceparent. */
export function freshTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-00`;
}
