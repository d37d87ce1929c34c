/** Game events posted as JSON over REST (the event-bus plan): players, scores, moves, matches. */
import { z } from 'zod';
import type { Family } from '../family.ts';

/** Ids that end up in topic names: Kafka allows [a-zA-Z0-9._-]. */
const name = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'expected 1-64 chars of [a-zA-Z0-9_-]');
const id = z.string().min(1).max(128);

const scoreV1 = z.object({ game_id: name, player_id: id, score: z.number().int() });
const scoreV2 = z.object({
  game_id: name,
  player_id: id,
  points: z.number().int(),
  reason: z.string().max(256),
});

export const game: Family = {
  name: 'game',
  route: 'generic',
  description: 'game events over REST/JSON: players joining, scores, moves (local), matches ending',
  types: {
    'game.player_joined': {
      versions: { 1: z.object({ game_id: name, player_id: id, team: z.string().max(64).optional() }) },
      topic: 'game.{game_id}.players',
      key: 'player_id',
      priority: 'normal',
      ttlMs: 3_600_000,
      propagation: 'full',
    },
    'game.score_updated': {
      versions: { 1: scoreV1, 2: scoreV2 },
      // v1 said `score`; v2 calls it `points` and says why it changed.
      upcast: { 1: ({ score, ...rest }) => ({ ...rest, points: score, reason: 'unspecified' }) },
      topic: 'game.{game_id}.scores',
      key: 'player_id',
      priority: 'normal',
      ttlMs: 60_000,
      propagation: 'full',
    },
    'game.player_moved': {
      versions: { 1: z.object({ game_id: name, player_id: id, x: z.number(), y: z.number() }) },
      topic: 'game.{game_id}.moves',
      key: 'player_id',
      priority: 'low',
      ttlMs: 300_000,
      propagation: 'local',
    },
    'game.match_ended': {
      versions: {
        1: z.object({ game_id: name, winner: id.optional(), duration_ms: z.number().int().nonnegative() }),
      },
      topic: 'game.{game_id}.matches',
      key: 'game_id',
      priority: 'high',
      ttlMs: 86_400_000,
      propagation: 'full',
    },
  },
};
