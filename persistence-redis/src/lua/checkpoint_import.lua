-- Writes an exported thread into an empty thread (copy_thread's second half).
-- KEYS: 1 content hash, 2 created-at hash, 3 ids zset (all of the target thread)
-- ARGV: 1 key prefix of the target's writes hashes, then groups as checkpoint_export
-- returns (writes as field, value pairs).
if redis.call('ZCARD', KEYS[3]) > 0 then
  return {'conflict', 'target thread is not empty'}
end
local i = 2
local copied = 0
while i <= #ARGV do
  local id, content, at, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  redis.call('HSET', KEYS[1], id, content)
  redis.call('HSET', KEYS[2], id, at)
  redis.call('ZADD', KEYS[3], 0, id)
  for j = 0, n - 1, 2 do
    redis.call('HSET', ARGV[1] .. id, ARGV[i + 4 + j], ARGV[i + 5 + j])
  end
  copied = copied + 1
  i = i + 4 + n
end
return {'ok', tostring(copied)}
