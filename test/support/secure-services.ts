/**
 * The TLS Redis and the SASL_SSL Kafka broker of `ops/services` (started on demand, like the
 * plain ones by ops/test), and what a client needs to reach them.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { ROOT } from './processes.ts';

const run = promisify(execFile);

/** `ops/services up <service>` and the settings it prints (`NAME=value` words). */
export async function upService(service: 'redis-tls' | 'kafka-sasl'): Promise<Record<string, string>> {
  const { stdout } = await run('bash', ['ops/services', 'up', service], { cwd: ROOT, timeout: 180_000 });
  const words = stdout.split(/\s+/).filter((w) => /^[A-Z_]+=/.test(w));
  return Object.fromEntries(words.map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
}

/** The pipeline's settings for the SASL_SSL broker, the password read from its file. */
export async function saslKafkaSettings(): Promise<Record<string, string>> {
  const { KAFKA_SASL_PASSWORD_FILE: file, ...settings } = await upService('kafka-sasl');
  return { ...settings, KAFKA_SASL_PASSWORD: readFileSync(file!, 'utf8').trim() };
}

/** A CA nobody signed the servers with: clients that trust only it must refuse them. */
export async function unrelatedCa(dir: string): Promise<string> {
  const file = `${dir}/other-ca.pem`;
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=unrelated CA',
    '-keyout',
    `${dir}/other-ca.key`,
    '-out',
    file,
  ]);
  return file;
}
