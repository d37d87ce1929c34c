-- dlq-recount: rebuilds the DLQ's counts by stage and reason from the DLQ itself. Run only when
-- the counts disagree with XLEN (dead letters from before the counts existed, or deleted by
-- hand): it reads the whole DLQ, which ATLAS_DLQ_MAX_ENTRIES bounds.
-- KEYS: 1 dlq, 2 counts   Returns the number of dead letters counted.
--@include lib/dlq-counts.lua

redis.call('DEL', KEYS[2])
local total, from = 0, '-'
while true do
  local page = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 1000)
  if #page == 0 then break end
  for _, entry in ipairs(page) do redis.call('HINCRBY', KEYS[2], countField(entry[2]), 1) end
  total = total + #page
  from = '(' .. page[#page][1]
end
return total
