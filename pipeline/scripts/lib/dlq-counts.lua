-- The DLQ's counts by stage and reason (a hash, field "<stage>|<reason>"), kept in step by
-- every script that deletes dead letters (commit.lua adds with HINCRBY), so the
-- atlas_dlq_entries gauge costs one HGETALL instead of a scan of the DLQ.
local function countField(fields)
  local stage, reason = '', ''
  for i = 1, #fields, 2 do
    if fields[i] == 'stage' then stage = fields[i + 1] elseif fields[i] == 'reason' then reason = fields[i + 1] end
  end
  return stage .. '|' .. reason
end

local function uncount(countsKey, fields)
  local field = countField(fields)
  -- At zero the field goes: a reason that left the DLQ leaves no series behind.
  if redis.call('HINCRBY', countsKey, field, -1) <= 0 then redis.call('HDEL', countsKey, field) end
end
