-- Takes a free lock (SET NX PX) and hands out the next fence: one more than the counter,
-- and never less than the server clock in microseconds. The floor is what keeps fences
-- from going backwards when the counter is lost (a restart without persistence, a
-- failover to a replica that missed it, an eviction): every fence handed out before was
-- at most the clock of its moment, which has passed. Because of that floor the counter
-- may expire once the lease it served is long over, so unused lock names leave nothing.
-- Returns {fence, expires_at} or nil.
-- KEYS: 1 lease (token), 2 fence counter
-- ARGV: 1 token, 2 ttl ms
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return nil
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local fence = redis.call('INCR', KEYS[2])
if fence < now_us then
  fence = now_us
  redis.call('SET', KEYS[2], string.format('%.0f', fence))
end
-- Kept an hour past the lease, far longer than any clock step the floor must outlast.
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + 3600000)
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {string.format('%.0f', fence), string.format('%.0f', now + tonumber(ARGV[2]))}
