-- lease-acquire: takes the lease if it is free and returns a new fencing token (a counter
-- that only grows), so a worker that lost its lease can never commit after its successor.
-- KEYS: 1 lease, 2 fence counter   ARGV: ttlMs, holder   Returns the token or nil.
if redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local token = tostring(redis.call('INCR', KEYS[2]))
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
redis.call('SET', KEYS[1] .. ':holder', ARGV[2], 'PX', ARGV[1])
return token
