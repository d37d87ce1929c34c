/**
 * The one place that turns settings into a kafkajs connection (brokers, TLS, SASL): the emit
 * sink, `atlas tail` and `atlas kafka init` all connect the same way.
 */
import { readFileSync } from 'node:fs';
import type { KafkaConfig, SASLOptions } from 'kafkajs';
import type { Config } from '../../pipeline/config.ts';

export type KafkaTarget = Pick<
  Config,
  | 'KAFKA_BROKER'
  | 'KAFKA_TLS'
  | 'KAFKA_TLS_CA_FILE'
  | 'KAFKA_SASL_MECHANISM'
  | 'KAFKA_SASL_USERNAME'
  | 'KAFKA_SASL_PASSWORD'
>;

export type KafkaConnection = Pick<KafkaConfig, 'brokers' | 'ssl' | 'sasl'>;

export function kafkaConnection(target: KafkaTarget): KafkaConnection {
  return {
    brokers: target.KAFKA_BROKER.split(',').map((b) => b.trim()),
    ...tls(target),
    ...sasl(target),
  };
}

/** A private CA replaces the system's trust store; without one, the system CAs are used. */
function tls(target: KafkaTarget): Pick<KafkaConfig, 'ssl'> {
  if (!target.KAFKA_TLS) return {};
  if (!target.KAFKA_TLS_CA_FILE) return { ssl: true };
  return { ssl: { ca: [readFileSync(target.KAFKA_TLS_CA_FILE, 'utf8')] } };
}

function sasl(target: KafkaTarget): Pick<KafkaConfig, 'sasl'> {
  const mechanism = target.KAFKA_SASL_MECHANISM;
  if (!mechanism) return {};
  const options = {
    mechanism,
    username: target.KAFKA_SASL_USERNAME,
    password: target.KAFKA_SASL_PASSWORD,
  } as SASLOptions;
  return { sasl: options };
}
