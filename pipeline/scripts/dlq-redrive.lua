-- dlq-redrive: puts a dead-lettered entry back on the stream its failed stage reads and
-- removes it from the DLQ. An entry that carries the global `seq` gets a new one: it re-enters
-- the order now, and order-sensitive stages would otherwise drop it as already passed.
-- KEYS: 1 dlq, 2 blob refs, 3 seq counter, 4 dlq counts   ARGV: dlqId, blobPrefix, streamPrefix
-- Returns {targetStream, newId} or nil when the id is not in the DLQ.
--@include lib/blobs.lua
--@include lib/dlq-counts.lua

local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return nil end
local fields = found[1][2]
local target
local original = {}
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if name == 'stream' then target = value end
  if string.sub(name, 1, 5) == 'orig.' then
    local field = string.sub(name, 6)
    if field == 'seq' then value = tostring(redis.call('INCR', KEYS[3])) end
    original[#original + 1] = field
    original[#original + 1] = value
  end
end
if not target or string.sub(target, 1, #ARGV[3]) ~= ARGV[3] or #original == 0 then
  return redis.error_reply('dlq entry ' .. ARGV[1] .. ' has no source stream or original fields')
end
local id = append(target, original, KEYS[2])
release(fields, KEYS[2], ARGV[2])
uncount(KEYS[4], fields)
redis.call('XDEL', KEYS[1], ARGV[1])
return { target, id }
