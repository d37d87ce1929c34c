-- commit: one stage step, atomically — XACK the inputs, store blobs, append outputs (to any
-- stream, the DLQ included) and apply checkpoint writes. With a fence token, refuses to write
-- unless this worker still holds the stage's lease; with a generation, refuses to write unless
-- Redis still holds the pipeline generation the worker joined (state lost → STATE_LOST). A step
-- whose inputs are all acknowledged
-- already (a retry after a lost reply, or a consumer whose whole batch was taken over and
-- done) writes nothing and returns false. Redis does not roll a script back, so the whole step
-- is checked before the first write: a malformed step changes nothing.
-- KEYS: 1 input stream, 2 blob refs, 3 lease (or any key when unfenced), 4 generation (or any key
--       when unchecked), 5.. output/state keys
-- ARGV: group, fence, blobPrefix, generation, nBlobs {sha bytes}, nAcks {id},
--       nAppends {keyIdx hasRefs nFields {f v}}, nOps {op keyIdx nArgs {arg}}
--@include lib/blobs.lua
--@include lib/fence.lua

local group, fence, blobPrefix, generation = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if generation ~= '' and redis.call('GET', KEYS[4]) ~= generation then
  return redis.error_reply('STATE_LOST the pipeline generation in Redis is not ' .. generation)
end
local refused = fenced(KEYS[3], fence)
if refused then return refused end

local function fail(message) return redis.error_reply('commit: ' .. message) end
local function key_of(index) return KEYS[tonumber(index)] end
local types = {}
local function type_ok(key, wanted)
  types[key] = types[key] or redis.call('TYPE', key).ok
  return types[key] == 'none' or types[key] == wanted or wanted == 'any'
end
local kinds = { HSET = 'hash', HSETNX = 'hash', HDEL = 'hash', HINCRBY = 'hash', SET = 'string', DEL = 'any', SADD = 'set', SREM = 'set' }

-- pos: the next ARGV index to read.
local pos = 6 + 2 * tonumber(ARGV[5])
local nAcks = tonumber(ARGV[pos])
local acks = { unpack(ARGV, pos + 1, pos + nAcks) }
pos = pos + nAcks + 1

local appends = {}
local nAppends = tonumber(ARGV[pos])
pos = pos + 1
for i = 1, nAppends do
  local key, nFields = key_of(ARGV[pos]), tonumber(ARGV[pos + 2])
  local from, to = pos + 3, pos + 2 + (nFields or 0)
  if not key or not nFields or nFields < 2 or nFields % 2 ~= 0 or to > #ARGV then
    return fail('malformed append ' .. i)
  end
  if not type_ok(key, 'stream') then return fail(key .. ' is not a stream') end
  appends[i] = { key = key, hasRefs = ARGV[pos + 1] == '1', from = from, to = to }
  pos = to + 1
end

local ops = {}
local nOps = tonumber(ARGV[pos])
pos = pos + 1
for i = 1, nOps do
  local op, key, nArgs = ARGV[pos], key_of(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  local from, to = pos + 3, pos + 2 + (nArgs or 0)
  if not kinds[op] then return fail('op not allowed ' .. tostring(op)) end
  -- DEL alone takes no argument beyond its key; every other op needs one.
  if not key or not nArgs or nArgs < (op == 'DEL' and 0 or 1) or to > #ARGV then return fail('malformed op ' .. i) end
  if not type_ok(key, kinds[op]) then return fail(key .. ' has the wrong type for ' .. op) end
  ops[i] = { op = op, key = key, from = from, to = to }
  pos = to + 1
end

if nAcks > 0 and redis.call('XACK', KEYS[1], group, unpack(acks)) == 0 then return false end
put_blobs(blobPrefix, ARGV, 5)
local ids = {}
for i, a in ipairs(appends) do
  if a.hasRefs then count_refs(ARGV, a.from, a.to, KEYS[2]) end
  ids[i] = redis.call('XADD', a.key, '*', unpack(ARGV, a.from, a.to))
end
for _, o in ipairs(ops) do redis.call(o.op, o.key, unpack(ARGV, o.from, o.to)) end
return ids
