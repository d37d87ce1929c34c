-- trim-acknowledged: retention that never drops what a group still needs. Deletes up to
-- `count` of the oldest entries below `cutoff` (everything below it is acknowledged by every
-- group), releasing their blobs. The caller sizes `count` so that the newest
-- ATLAS_RETAIN_ENTRIES acknowledged entries stay.
-- KEYS: 1 stream, 2 blob refs   ARGV: cutoff (exclusive id), count, blobPrefix
--@include lib/blobs.lua

local old = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[1], 'COUNT', tonumber(ARGV[2]))
for _, entry in ipairs(old) do
  release(entry[2], KEYS[2], ARGV[3])
  redis.call('XDEL', KEYS[1], entry[1])
end
return #old
