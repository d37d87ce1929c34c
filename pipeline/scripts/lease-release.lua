-- lease-release: gives the lease up at a clean stop so a standby takes over at once.
-- KEYS: 1 lease   ARGV: token
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[1] .. ':holder')
return 1
