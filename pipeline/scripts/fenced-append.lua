-- fenced-append: appends entries to a stream, all or none, only while the writer still holds
-- its stage's lease — the fence checked in the same script as the write, so an instance paused
-- past its lease can never append after its successor. Checks every entry before the first
-- write (Redis does not roll a script back). Returns the id of the last entry.
-- KEYS: 1 stream, 2 lease (or any key when unfenced)   ARGV: fence, nEntries {nFields {f v}}
--@include lib/fence.lua

local refused = fenced(KEYS[2], ARGV[1])
if refused then return refused end
local entries, pos = {}, 3
for i = 1, tonumber(ARGV[2]) do
  local nFields = tonumber(ARGV[pos])
  if not nFields or nFields < 2 or nFields % 2 ~= 0 or pos + nFields > #ARGV then
    return redis.error_reply('fenced-append: malformed entry ' .. i)
  end
  entries[i] = { from = pos + 1, to = pos + nFields }
  pos = pos + nFields + 1
end
local last = false
for _, e in ipairs(entries) do last = redis.call('XADD', KEYS[1], '*', unpack(ARGV, e.from, e.to)) end
return last
