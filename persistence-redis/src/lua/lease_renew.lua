-- Extends a lease still held by this token; nil if expired or taken over.
-- KEYS: 1 lease; ARGV: 1 token, 2 ttl ms
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return nil
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local t = redis.call('TIME')
return string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]))
