/**
 * The Kafka side over SASL_SSL (SCRAM-SHA-256 over TLS with a private CA) against the real
 * broker of `ops/services up kafka-sasl`: `atlas kafka init` creates the topic, the emit sink
 * publishes, `atlas tail` and the sink's read-back read it; a wrong password fails clearly
 * and is never printed.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Config, parseConfig } from '../../pipeline/config.ts';
import { createLogger } from '../../pipeline/log.ts';
import { kafkaConnection } from '../../stages/emit/kafka-client.ts';
import { KafkaSink } from '../../stages/emit/kafka-sink.ts';
import { eventually } from '../support/eventually.ts';
import { message, root } from '../support/out-messages.ts';
import { killChildren, runAtlas, spawnAtlas } from '../support/processes.ts';
import { uniquePrefix } from '../support/redis.ts';
import { saslKafkaSettings } from '../support/secure-services.ts';

const topic = `atlas-sasl-${randomUUID().slice(0, 8)}`;
const WRONG = 'not-the-Password-123';
let env: Record<string, string>;
let config: Config;
let sink: KafkaSink | undefined;

beforeAll(async () => {
  env = { ...(await saslKafkaSettings()), KAFKA_TOPIC_CANONICAL: topic, LOG_LEVEL: 'warn' };
  config = parseConfig(env);
}, 180_000);

afterAll(async () => {
  await sink?.stop();
  await killChildren();
});

describe('Kafka over SASL_SSL', () => {
  it('creates the topic, publishes through the emit sink and reads it back', async () => {
    expect(config.KAFKA_TLS).toBe(true);
    const init = await runAtlas(['kafka', 'init'], env, 60_000);
    expect(init.stderr).toBe('');
    expect(init.stdout).toContain(`${topic}: created`);

    sink = new KafkaSink({
      connection: kafkaConnection(config),
      topic,
      transactionalId: `atlas-test-sasl-${topic}`,
      log: createLogger('silent'),
    });
    await sink.start();
    await sink.publish([message(root(1), 1), message(root(2), 1), message(root(1), 2)]);
    // Read committed: the commit's markers land just after the commit returns.
    await eventually(async () =>
      expect(await sink!.lastSequences()).toEqual(
        new Map([
          [root(1), 2n],
          [root(2), 1n],
        ]),
      ),
    );

    const tail = await runAtlas(['tail', '--from-beginning', '--exit'], env, 60_000);
    expect(tail.code).toBe(0);
    expect(tail.stdout.match(/sequence/gi)?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(tail.stdout + tail.stderr).not.toContain(env.KAFKA_SASL_PASSWORD);
  });

  it('a wrong password fails clearly and is never printed', async () => {
    const r = await runAtlas(['kafka', 'init'], { ...env, KAFKA_SASL_PASSWORD: WRONG }, 60_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/SASL SCRAM SHA256 authentication failed/i);
    expect(r.stdout + r.stderr).not.toContain(WRONG);
    expect(r.stdout + r.stderr).not.toContain(env.KAFKA_SASL_PASSWORD);
  });

  it('an emit process with a wrong password logs the failure in JSON, never the password', async () => {
    const emit = spawnAtlas(['run', 'emit'], {
      ...env,
      KAFKA_SASL_PASSWORD: WRONG,
      ATLAS_PREFIX: uniquePrefix('sasl-emit'),
      LOG_LEVEL: 'info',
    });
    const started = await emit.waitForLog('emit: publishing to Kafka');
    expect(started.broker).toBe(env.KAFKA_BROKER);
    await emit.waitForLog(/authentication failed/i, 30_000);
    await emit.term();
    expect(emit.stdout + emit.stderr).not.toContain(WRONG);
    expect(emit.stdout + emit.stderr).not.toContain(env.KAFKA_SASL_PASSWORD);
  });

  it('without TLS the SASL listener does not serve the client', async () => {
    const r = await runAtlas(['kafka', 'init'], { ...env, KAFKA_TLS: 'false' }, 60_000);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toContain(env.KAFKA_SASL_PASSWORD);
  });
});
