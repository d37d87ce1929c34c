/**
 * Secrets (passwords in REDIS_URL, the Kafka SASL password) must never reach a log line, an
 * error message or `atlas config`. Everything that prints a URL, or an error that may quote a
 * secret, goes through here.
 */

export const MASK = '***';

/** scheme://[user:]secret@ — the user name stays readable, whatever is after it is masked. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)(?:([^\s/@:]*):)?[^\s/@]*@/gi;

/** `redis://user:pass@host` → `redis://user:***@host`, for every URL in the text. */
export function redactUrl(text: string): string {
  return text.replace(USERINFO, (_, scheme: string, user: string | undefined) =>
    user ? `${scheme}${user}:${MASK}@` : `${scheme}${MASK}@`,
  );
}

export function isUrl(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
}

/** The password of a URL as written and percent-decoded (drivers may quote either). */
export function urlPasswords(url: string): string[] {
  const password = /^[a-z][a-z0-9+.-]*:\/\/(?:[^\s/@:]*:)?([^\s/@]+)@/i.exec(url)?.[1];
  if (!password) return [];
  try {
    return [...new Set([password, decodeURIComponent(password)])];
  } catch {
    return [password]; // not valid percent-encoding: only the raw form can appear
  }
}

/** Masks URL passwords and each of `secrets` (e.g. the SASL password) in a free text. */
export function redactText(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = redactUrl(text);
  // longest first, so a secret that contains another is masked whole
  const known = secrets.filter((s): s is string => !!s).sort((a, b) => b.length - a.length);
  for (const secret of known) out = out.split(secret).join(MASK);
  return out;
}

/** Log fields pino masks wherever they appear (a config object, SASL options logged by mistake). */
export const redactPaths = [
  'password',
  '*.password',
  'sasl',
  '*.sasl',
  'KAFKA_SASL_PASSWORD',
  '*.KAFKA_SASL_PASSWORD',
  'REDIS_URL',
  '*.REDIS_URL',
];
