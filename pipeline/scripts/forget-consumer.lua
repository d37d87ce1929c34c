-- forget-consumer: removes a consumer from a group only if it holds no pending entry — checked
-- in the same atomic step, so a consumer that has just read cannot lose its entries with it.
-- KEYS: 1 stream   ARGV: group, consumer   Returns 1 when it was removed.
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
