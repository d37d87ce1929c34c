#!/usr/bin/env node
/**
 * The container's HEALTHCHECK: exits 0 when the door's /ready answers 200, else 1 with the reason
 * on stderr. A script of its own rather than an `atlas` command: it runs every few seconds and
 * should not load the pipeline's Redis and Kafka clients to make one request.
 *
 * /ready wants a bearer token when the door has ATLAS_AUTH_TOKENS: ATLAS_HEALTH_TOKEN is one of
 * them (its raw value, not the hash).
 */
const port = process.env.ATLAS_HTTP_PORT ?? '8080';
const token = process.env.ATLAS_HEALTH_TOKEN;

try {
  const answer = await fetch(`http://127.0.0.1:${port}/ready`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(4000),
  });
  if (!answer.ok) console.error(`/ready answered ${answer.status}: ${await answer.text()}`);
  process.exitCode = answer.ok ? 0 : 1;
} catch (err) {
  console.error(`/ready did not answer: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
