/**
 * Kasmina's message bus (the message-bus plan): telemetry, lifecycle control commands with their
 * acknowledgements, and seed lifecycle events. The plan's topic hierarchy
 * `kasmina/telemetry/layer/{id}/health` is written with dots: Kafka does not allow `/` in a topic.
 */
import { z } from 'zod';
import type { Family } from '../family.ts';

const name = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'expected 1-64 chars of [a-zA-Z0-9_-]');
const action = z.enum(['germinate', 'graft', 'cull', 'freeze', 'resume']);

export const kasmina: Family = {
  name: 'kasmina',
  route: 'generic',
  description: 'message bus: layer telemetry, lifecycle control commands and acks, seed events',
  types: {
    'kasmina.telemetry.layer_health': {
      versions: {
        1: z.object({
          layer_id: name,
          health: z.number().min(0).max(1),
          latency_ms: z.number().nonnegative(),
        }),
      },
      topic: 'kasmina.telemetry.layer.{layer_id}.health',
      key: 'layer_id',
      priority: 'low',
      ttlMs: 30_000,
      propagation: 'full',
    },
    'kasmina.telemetry.layer_metrics': {
      versions: {
        1: z.object({
          layer_id: name,
          samples: z.number().int().nonnegative(),
          errors: z.number().int().nonnegative(),
        }),
      },
      topic: 'kasmina.telemetry.layer.{layer_id}.metrics',
      key: 'layer_id',
      priority: 'low',
      ttlMs: 60_000,
      propagation: 'summary',
      windowMs: 2_000,
      sum: ['samples', 'errors'],
    },
    'kasmina.control.lifecycle': {
      versions: { 1: z.object({ command_id: name, seed_id: name, action }) },
      topic: 'kasmina.control.lifecycle',
      key: 'seed_id',
      priority: 'critical',
      ttlMs: 10_000,
      propagation: 'full',
    },
    'kasmina.control.lifecycle_ack': {
      versions: {
        1: z.object({ command_id: name, seed_id: name, status: z.enum(['accepted', 'rejected', 'done']) }),
      },
      topic: 'kasmina.control.lifecycle.ack',
      key: 'seed_id',
      priority: 'critical',
      ttlMs: 60_000,
      propagation: 'full',
    },
    'kasmina.seed.germinated': {
      versions: {
        1: z.object({ seed_id: name, layer_id: name }),
        2: z.object({ seed_id: name, layer_id: name, epoch: z.number().int().nonnegative() }),
      },
      // v1 producers predate training epochs: their seeds germinated before the first one.
      upcast: { 1: (p) => ({ ...p, epoch: 0 }) },
      topic: 'kasmina.events.seed.germinated',
      key: 'seed_id',
      priority: 'high',
      ttlMs: 3_600_000,
      propagation: 'full',
    },
  },
};
