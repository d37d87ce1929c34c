-- The lease fence: a worker that lost its stage's lease (paused, partitioned) must not write.
-- Returns an error reply starting FENCED (typed as FencedError by the caller) unless `token` is
-- empty (unfenced) or the lease's current token.
local function fenced(leaseKey, token)
  if token ~= '' and redis.call('GET', leaseKey) ~= token then
    return redis.error_reply('FENCED lease lost; another instance is active')
  end
end
