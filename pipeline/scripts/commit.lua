-- commit: one stage step, atomically — XACK the inputs, store blobs, append outputs (to any
-- stream, the DLQ included) and apply checkpoint writes. With a fence token, refuses to write
-- unless this worker still holds the stage's lease. A step whose inputs are all acknowledged
-- already (a retry after a lost reply, or a consumer that lost a race to a takeover) writes
-- nothing and returns false.
-- KEYS: 1 input stream, 2 blob refs, 3 lease (or any key when unfenced), 4.. output/state keys
-- ARGV: group, fence, blobPrefix, nBlobs {sha bytes}, nAcks {id}, nAppends {keyIdx hasRefs nFields {f v}},
--       nOps {op keyIdx nArgs {arg}}
--@include lib/blobs.lua

local group, fence, blobPrefix = ARGV[1], ARGV[2], ARGV[3]
if fence ~= '' and redis.call('GET', KEYS[3]) ~= fence then
  return redis.error_reply('FENCED lease lost; another instance is active')
end

local nBlobs = tonumber(ARGV[4])
local at = 5 + 2 * nBlobs
local nAcks = tonumber(ARGV[at])
local acks = {}
for i = 1, nAcks do acks[i] = ARGV[at + i] end
at = at + nAcks + 1
if nAcks > 0 and redis.call('XACK', KEYS[1], group, unpack(acks)) == 0 then return false end
put_blobs(blobPrefix, ARGV, 4)

local ids = {}
local nAppends = tonumber(ARGV[at])
at = at + 1
for i = 1, nAppends do
  local key, hasRefs, nFields = KEYS[tonumber(ARGV[at])], ARGV[at + 1] == '1', tonumber(ARGV[at + 2])
  local from, to = at + 3, at + 2 + nFields
  if hasRefs then count_refs(ARGV, from, to, KEYS[2]) end
  ids[i] = redis.call('XADD', key, '*', unpack(ARGV, from, to))
  at = to + 1
end

local allowed = { HSET = true, HDEL = true, SET = true, DEL = true, SADD = true, SREM = true }
local nOps = tonumber(ARGV[at])
at = at + 1
for _ = 1, nOps do
  local op, key, nArgs = ARGV[at], KEYS[tonumber(ARGV[at + 1])], tonumber(ARGV[at + 2])
  if not allowed[op] then return redis.error_reply('commit: op not allowed ' .. op) end
  local args = {}
  for j = 1, nArgs do args[j] = ARGV[at + 2 + j] end
  redis.call(op, key, unpack(args))
  at = at + 3 + nArgs
end

return ids
