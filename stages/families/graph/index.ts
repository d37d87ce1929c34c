/** Graph-algorithm events: runs starting and completing, node activations, edge traversals. */
import { z } from 'zod';
import type { EventTypeSpec, Family } from '../family.ts';

const name = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'expected 1-64 chars of [a-zA-Z0-9_-]');
const id = z.string().min(1).max(128);
const run = { run_id: name, algorithm: name };
const step = z.number().int().nonnegative();

const lifecycle = {
  topic: 'graph.algorithm.{algorithm}.lifecycle',
  key: 'run_id',
  priority: 'high',
} as const;
const traffic = { key: 'run_id', priority: 'low', ttlMs: 300_000, propagation: 'full' } as const;

const started: EventTypeSpec = {
  ...lifecycle,
  versions: { 1: z.object({ ...run, graph_id: id }) },
  ttlMs: 3_600_000,
  propagation: 'full',
};

export const graph: Family = {
  name: 'graph',
  route: 'generic',
  description: 'graph algorithm runs: start and completion, node activations, edge traversals',
  types: {
    'graph.algorithm_started': started,
    'graph.algorithm_completed': {
      ...started,
      versions: { 1: z.object({ ...run, steps: step, duration_ms: z.number().nonnegative() }) },
    },
    'graph.node_activated': {
      ...traffic,
      versions: { 1: z.object({ ...run, node_id: id, step, value: z.number().optional() }) },
      topic: 'graph.algorithm.{algorithm}.activations',
    },
    'graph.edge_traversed': {
      ...traffic,
      versions: { 1: z.object({ ...run, source: id, target: id, step, weight: z.number().optional() }) },
      topic: 'graph.algorithm.{algorithm}.traversals',
    },
  },
};
