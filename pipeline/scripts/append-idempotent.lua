-- append-idempotent: the door's one atomic step per request. For each event: if its
-- idempotency key was accepted within the window, report the first acceptance; otherwise
-- take the next dense global seq, XADD, and remember the key.
-- Refuses (STATE_LOST) unless Redis still holds the pipeline generation the door joined: a door
-- must never start `seq` again at 1 in a Redis that lost the pipeline's state.
-- KEYS: 1 stream, 2 seq counter, 3 blob refs, 4 generation
-- ARGV: windowSeconds, dedupPrefix, blobPrefix, nBlobs {sha bytes}, nEvents {key hasRefs nFields {f v}},
--       generation (last)
-- Returns per event {seq, streamId, duplicate(0|1)}; the entry gets fields seq first, then the given ones.
--@include lib/blobs.lua

local window, dedupPrefix, blobPrefix = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', KEYS[4]) ~= ARGV[#ARGV] then
  return redis.error_reply('STATE_LOST the pipeline generation in Redis is not ' .. ARGV[#ARGV])
end
-- Blobs are stored only for events that are appended: a duplicate's blob would have no entry
-- pointing at it, and nothing would ever delete it.
local blobBytes = {}
local nBlobs = tonumber(ARGV[4])
for i = 1, nBlobs do blobBytes[ARGV[3 + 2 * i]] = ARGV[4 + 2 * i] end
local function store_refs(from, to)
  for j = from, to, 2 do
    if is_blob_field(ARGV[j]) then
      local sha = ARGV[j + 1]
      redis.call('SET', blobPrefix .. sha, blobBytes[sha], 'NX')
      redis.call('HINCRBY', KEYS[3], sha, 1)
    end
  end
end

local at = 5 + 2 * nBlobs
local n = tonumber(ARGV[at])
at = at + 1
local results = {}
for i = 1, n do
  local dedupKey, hasRefs, nFields = dedupPrefix .. ARGV[at], ARGV[at + 1] == '1', tonumber(ARGV[at + 2])
  local from, to = at + 3, at + 2 + nFields
  local first = redis.call('GET', dedupKey)
  if first then
    local sep = string.find(first, ' ', 1, true)
    results[i] = { tonumber(string.sub(first, 1, sep - 1)), string.sub(first, sep + 1), 1 }
  else
    local seq = redis.call('INCR', KEYS[2])
    if hasRefs then store_refs(from, to) end
    local id = redis.call('XADD', KEYS[1], '*', 'seq', seq, unpack(ARGV, from, to))
    redis.call('SET', dedupKey, seq .. ' ' .. id, 'EX', window)
    results[i] = { seq, id, 0 }
  end
  at = to + 1
end
return results
