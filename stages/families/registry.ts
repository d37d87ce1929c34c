/** Every event family the pipeline accepts. Adding one: its folder, and one line here. */
import type { EventTypeSpec, Family } from './family.ts';
import { game } from './game/index.ts';
import { graph } from './graph/index.ts';
import { kasmina } from './kasmina/index.ts';
import { topology } from './topology/index.ts';

export const families: readonly Family[] = [topology, game, kasmina, graph];

export interface Registered {
  family: Family;
  eventType: string;
  spec: EventTypeSpec;
}

const byType = new Map<string, Registered>();
for (const family of families) {
  for (const [eventType, spec] of Object.entries(family.types)) {
    if (byType.has(eventType)) throw new Error(`event type ${eventType} is declared by two families`);
    byType.set(eventType, { family, eventType, spec });
  }
}

export function lookup(eventType: string): Registered | undefined {
  return byType.get(eventType);
}

export function registered(): Registered[] {
  return [...byType.values()];
}
