-- Deletes a namespace's expired items; returns how many, and whether items remain.
-- KEYS: 1 values hash, 2 meta hash, 3 keys zset, 4 expiry zset, 5 ttls hash
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, key in ipairs(expired) do
  redis.call('HDEL', KEYS[1], key)
  redis.call('HDEL', KEYS[2], key)
  redis.call('ZREM', KEYS[3], key)
  redis.call('ZREM', KEYS[4], key)
  redis.call('HDEL', KEYS[5], key)
end
return {#expired, redis.call('ZCARD', KEYS[3])}
