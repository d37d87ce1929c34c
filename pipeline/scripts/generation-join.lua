-- generation-join: the pipeline's identity in this Redis. The first process to start on an empty
-- Redis writes a new generation id (and starts the lineage with it); every later process reads
-- the one there. A Redis that lost its data comes back without it, and processes that knew the
-- old id notice (commit.lua and append-idempotent.lua compare it on every write).
-- KEYS: 1 generation, 2 lineage (set of generations this Redis's data descends from)
-- ARGV: a fresh id, used only when there is none
-- Returns the current generation id.
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return ARGV[1]
