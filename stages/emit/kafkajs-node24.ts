/**
 * What every kafkajs client of the project needs on Node 24: the zstd codec, and silence for
 * the TimeoutNegativeWarning kafkajs 2.2.4 triggers on each connection (kafkajs#1751, still
 * open: a negative setTimeout that Node clamps to 1 ms — harmless, but it floods the logs).
 */
import { installZstd } from './zstd-codec.ts';

let prepared = false;

export function prepareKafkajs(): void {
  if (prepared) return;
  prepared = true;
  installZstd();
  const defaults = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    if (warning.name === 'TimeoutNegativeWarning') return;
    for (const listener of defaults) listener(warning);
  });
}
