-- dlq-redrive: puts a dead-lettered entry back on the stream its failed stage reads and
-- removes it from the DLQ. An entry that carries the global `seq` gets a new one: it re-enters
-- the order now, and order-sensitive stages would otherwise drop it as already passed.
-- The redriven entry carries its history in `redrive.*` fields (how many redrives, the DLQ ids
-- it had, its first failure): when it fails again, the new dead letter copies them under
-- `orig.redrive.*`, so a loop is visible instead of looking like a fresh failure.
-- KEYS: 1 dlq, 2 blob refs, 3 seq counter, 4 dlq counts   ARGV: dlqId, blobPrefix, streamPrefix
-- Returns {targetStream, newId} or nil when the id is not in the DLQ.
--@include lib/blobs.lua
--@include lib/dlq-counts.lua

local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return nil end
local fields = found[1][2]
local own, original, history = {}, {}, {}
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if string.sub(name, 1, 13) == 'orig.redrive.' then
    history[string.sub(name, 14)] = value
  elseif string.sub(name, 1, 5) == 'orig.' then
    original[#original + 1] = string.sub(name, 6)
    original[#original + 1] = value
  else
    own[name] = value
  end
end
local target = own['stream']
if not target or string.sub(target, 1, #ARGV[3]) ~= ARGV[3] or #original == 0 then
  return redis.error_reply('dlq entry ' .. ARGV[1] .. ' has no source stream or original fields')
end

-- validated: the writes start here
for i = 1, #original, 2 do
  if original[i] == 'seq' then original[i + 1] = tostring(redis.call('INCR', KEYS[3])) end
end
local previous = history['previous']
previous = (previous and previous ~= '') and (previous .. ',' .. ARGV[1]) or ARGV[1]
local carried = {
  'redrive.count', tostring((tonumber(history['count']) or 0) + 1),
  'redrive.previous', previous,
  'redrive.first_reason', history['first_reason'] or own['reason'] or '',
  'redrive.first_error', history['first_error'] or own['error'] or '',
  'redrive.first_failed_at', history['first_failed_at'] or own['failed_at'] or '',
}
for i = 1, #carried do original[#original + 1] = carried[i] end
local id = append(target, original, KEYS[2])
release(fields, KEYS[2], ARGV[2])
uncount(KEYS[4], fields)
redis.call('XDEL', KEYS[1], ARGV[1])
return { target, id }
