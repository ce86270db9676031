-- Writes an item with compare-and-swap on its version and an optional TTL. An expired
-- item counts as absent (version 0).
-- KEYS: 1 values hash (key -> envelope json), 2 meta hash (key -> "version|created|updated|exp"),
--       3 keys zset (lex), 4 expiry zset (score = expiry ms), 5 ttls hash (key -> "updated|ttl ms",
--       what a refresh restarts; kept apart so libraries reading 4-field meta records still read)
-- ARGV: 1 key, 2 envelope json, 3 ttl ms or '', 4 expected version or ''
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local version, created, had_expiry = 0, now, false
local meta = redis.call('HGET', KEYS[2], ARGV[1])
if meta then
  local v, c, _, e = string.match(meta, '^(%d+)|(%d+)|(%d+)|(%d*)$')
  had_expiry = e ~= ''
  if e == '' or tonumber(e) > now then
    version, created = tonumber(v), tonumber(c)
  end
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= version then
  return {'conflict', 'expected version ' .. ARGV[4] .. ', found ' .. version}
end
local exp = ''
if ARGV[3] ~= '' then
  exp = string.format('%.0f', now + tonumber(ARGV[3]))
  redis.call('ZADD', KEYS[4], exp, ARGV[1])
  redis.call('HSET', KEYS[5], ARGV[1], string.format('%.0f|', now) .. ARGV[3])
elseif had_expiry then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
end
version = version + 1
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%.0f|%.0f|%.0f|', version, created, now) .. exp)
-- A key with a meta record is in the keys index already (they are written and removed
-- together).
if not meta then
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
return {'ok', string.format('%.0f', version)}
