-- Deletes an item, honouring an expected version (absent or expired = 0).
-- KEYS: 1 values hash, 2 meta hash, 3 keys zset, 4 expiry zset, 5 ttls hash
-- ARGV: 1 key, 2 expected version or ''
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local version = 0
local meta = redis.call('HGET', KEYS[2], ARGV[1])
if meta then
  local v, e = string.match(meta, '^(%d+)|%d+|%d+|(%d*)$')
  if e == '' or tonumber(e) > now then
    version = tonumber(v)
  end
end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= version then
  return {'conflict', 'expected version ' .. ARGV[2] .. ', found ' .. version}
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return {'ok', version > 0 and '1' or '0'}
