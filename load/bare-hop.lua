-- bare-hop: the bare baseline's one atomic step per batch (load/bare-pipeline.ts, never the
-- pipeline): acknowledge the batch read from the input stream and append its outputs, as the
-- stages' commit does, without checkpoints, fences or dedup. The door calls it with no input.
-- KEYS: 1 input stream, 2 output stream
-- ARGV: group, nAcks {id}, nOut {nFields {f v}}
-- Returns the number of entries appended.

local group, nAcks = ARGV[1], tonumber(ARGV[2])
if nAcks == nil then return redis.error_reply('BAD_ARGS bare-hop: nAcks is not a number') end
local nOut = tonumber(ARGV[3 + nAcks])
if nOut == nil then return redis.error_reply('BAD_ARGS bare-hop: nOut is not a number') end
if nAcks > 0 then redis.call('XACK', KEYS[1], group, unpack(ARGV, 3, 2 + nAcks)) end
local at = 4 + nAcks
for _ = 1, nOut do
  local n = tonumber(ARGV[at])
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, at + 1, at + n))
  at = at + n + 1
end
return nOut
