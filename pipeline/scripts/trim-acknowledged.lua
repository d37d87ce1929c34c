-- trim-acknowledged: retention that never drops what a group still needs. Deletes the oldest
-- entries below `cutoff` (everything every group has acknowledged) beyond the newest `retain`
-- of them, releasing their blobs; at most `limit` per call.
-- KEYS: 1 stream, 2 blob refs   ARGV: cutoff (exclusive id), retain, limit, blobPrefix
--@include lib/blobs.lua

local cutoff, retain, limit, blobPrefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local kept = redis.call('XREVRANGE', KEYS[1], '(' .. cutoff, '-', 'COUNT', retain + 1)
if #kept <= retain then return 0 end
local newestToDrop = kept[retain + 1][1]
local old = redis.call('XRANGE', KEYS[1], '-', newestToDrop, 'COUNT', limit)
for _, entry in ipairs(old) do
  release(entry[2], KEYS[2], blobPrefix)
  redis.call('XDEL', KEYS[1], entry[1])
end
return #old
