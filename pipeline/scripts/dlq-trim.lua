-- dlq-trim: bounds the dead-letter stream by count and by age, oldest first, releasing the
-- blobs the deleted entries point at (so reference counts stay right). Looks at one entry at
-- a time: when the oldest is within both bounds, the call costs one XLEN and one XRANGE.
-- KEYS: 1 dlq, 2 blob refs, 3 dlq counts   ARGV: blobPrefix, maxEntries (0 = any), maxAgeMs (0 = any), limit
-- Returns how many entries were deleted.
--@include lib/blobs.lua
--@include lib/dlq-counts.lua

local maxEntries, maxAgeMs, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local excess = 0
if maxEntries > 0 then excess = redis.call('XLEN', KEYS[1]) - maxEntries end
local cutoff = -1
if maxAgeMs > 0 then
  local now = redis.call('TIME')
  cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - maxAgeMs
end

local trimmed = 0
while trimmed < limit do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if not oldest then break end
  local addedMs = tonumber(string.match(oldest[1], '^(%d+)'))
  if trimmed >= excess and addedMs >= cutoff then break end
  release(oldest[2], KEYS[2], ARGV[1])
  uncount(KEYS[3], oldest[2])
  redis.call('XDEL', KEYS[1], oldest[1])
  trimmed = trimmed + 1
end
return trimmed
