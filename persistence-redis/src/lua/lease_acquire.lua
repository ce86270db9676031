-- Takes a free lock (SET NX PX) and bumps its fence counter, which has no TTL, so fences
-- grow across holders and survive the lease. Returns {fence, expires_at} or nil.
-- KEYS: 1 lease (token), 2 fence counter
-- ARGV: 1 token, 2 ttl ms
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return nil
end
local fence = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return {tostring(fence), string.format('%.0f', now + tonumber(ARGV[2]))}
