/**
 * Bearer tokens (the door, and every process's operator listener). The settings hold only sha256 hashes of the tokens; a presented
 * token is hashed and compared with every configured hash in constant time, so neither the
 * comparison nor which entry matched shows in the timing.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthToken } from './config.ts';

const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

/** The configured token a request's Authorization header names, or undefined. */
export function tokenFor(tokens: AuthToken[], header: string | undefined): AuthToken | undefined {
  const presented = header === undefined ? undefined : BEARER.exec(header)?.[1];
  if (presented === undefined) return undefined;
  const hash = sha256(presented);
  let found: AuthToken | undefined;
  for (const t of tokens) if (timingSafeEqual(hash, t.sha256) && !found) found = t;
  return found;
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** A fresh token (32 random bytes, base64url) and the ATLAS_AUTH_TOKENS entry that accepts it. */
export function newToken(name: string, ratePerSecond?: number): { token: string; entry: string } {
  const token = `atlas_${randomBytes(32).toString('base64url')}`;
  const rate = ratePerSecond === undefined ? '' : `:${ratePerSecond}`;
  return { token, entry: `${name}:${sha256(token).toString('hex')}${rate}` };
}

/**
 * Per-token rate limits as token buckets holding one second's worth of requests, in this
 * process (each door process allows the rate on its own).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { left: number; at: number }>();

  /** 0 when the request may go now, else the seconds until it may. */
  take(token: AuthToken, now = Date.now()): number {
    const rate = token.ratePerSecond;
    if (rate === 0) return 0;
    const bucket = this.buckets.get(token.name) ?? { left: rate, at: now };
    bucket.left = Math.min(rate, bucket.left + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.buckets.set(token.name, bucket);
    if (bucket.left >= 1) {
      bucket.left -= 1;
      return 0;
    }
    return (1 - bucket.left) / rate;
  }
}
