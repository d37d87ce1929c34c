-- dlq-drop: deletes dead-lettered entries for good, releasing the blobs they point at.
-- KEYS: 1 dlq, 2 blob refs, 3 dlq counts   ARGV: blobPrefix, ids…   Returns how many were deleted.
--@include lib/blobs.lua
--@include lib/dlq-counts.lua

local dropped = 0
for i = 2, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found > 0 then
    release(found[1][2], KEYS[2], ARGV[1])
    uncount(KEYS[3], found[1][2])
    dropped = dropped + redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
return dropped
