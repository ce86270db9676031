-- Frees the lock only for its own token: a late release never frees the next holder.
-- KEYS: 1 lease; ARGV: 1 token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
