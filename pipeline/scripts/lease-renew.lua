-- lease-renew: extends the lease only while it is still ours. Returns 1, or 0 when lost.
-- KEYS: 1 lease   ARGV: token, ttlMs
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1] .. ':holder', ARGV[2])
return 1
