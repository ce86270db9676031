-- Stores a checkpoint unless the fence is stale, the id exists with other content, or
-- the expect-latest guard fails. Idempotent for identical content.
-- KEYS: 1 content hash (id -> json), 2 created-at hash (id -> ms), 3 ids zset (lex),
--       4 fence counter
-- ARGV: 1 id, 2 content json, 3 guard (0 any, 1 absent, 2 is), 4 expected id, 5 fence or '',
--       6 created-at (ms, the writer's clock)
-- (A put with neither guard nor fence runs no script: see `put_plain`.)
local refused, raise = fence_check(KEYS[4], ARGV[5])
if refused then
  return refused
end
-- Without a guard the content is written first (HSETNX: one call where a new id is the
-- common case); with one, nothing is written before the guard holds.
local new
if ARGV[3] == '0' then
  new = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1
else
  new = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
end
if not new then
  local existing = redis.call('HGET', KEYS[1], ARGV[1])
  if existing == ARGV[2] then
    return {'ok', redis.call('HGET', KEYS[2], ARGV[1])}
  end
  return {'conflict', 'checkpoint ' .. ARGV[1] .. ' already exists with other content'}
end
if ARGV[3] ~= '0' then
  local latest = redis.call('ZREVRANGEBYLEX', KEYS[3], '+', '-', 'LIMIT', 0, 1)[1]
  if (ARGV[3] == '1' and latest) or (ARGV[3] == '2' and latest ~= ARGV[4]) then
    return {'conflict', 'expected latest checkpoint ' .. (ARGV[4] ~= '' and ARGV[4] or 'none')
      .. ', found ' .. (latest or 'none')}
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
if raise then
  redis.call('SET', KEYS[4], raise)
end
local now = ARGV[6]
redis.call('HSET', KEYS[2], ARGV[1], now)
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return {'ok', now}
