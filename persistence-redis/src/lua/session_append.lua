-- Appends events with ordinals from the stored head (never from the log's length).
-- An expired session is gone (its keys expired); the fence counter has no TTL.
-- A closed live session refuses the append.
-- KEYS: 1 meta hash (head, exp, created, last, closed), 2 events zset (score = ordinal),
--       3 fence counter
-- ARGV: 1 expected head or '', 2 fence or '', 3 ttl ms or '', 4 the command announcing
--       the change ('PUBLISH' on a node, 'SPUBLISH' on a cluster, '': none), 5 its
--       channel, then event jsons
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local refused, raise = fence_check(KEYS[3], ARGV[2])
if refused then
  return refused
end
local meta = redis.call('HMGET', KEYS[1], 'head', 'exp', 'closed')
local head = tonumber(meta[1] or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= head then
  return {'conflict', 'expected head ' .. ARGV[1] .. ', found ' .. head}
end
if meta[3] and head > 0 then
  return {'closed', 'the session is closed: it takes no more appends'}
end
local stamp = string.format('%.0f', now)
if head == 0 then
  redis.call('HSET', KEYS[1], 'created', stamp)
end
for i = 6, #ARGV do
  head = head + 1
  redis.call('ZADD', KEYS[2], head, string.format('%.0f', head) .. '|' .. stamp .. '|' .. ARGV[i])
end
redis.call('HSET', KEYS[1], 'head', string.format('%.0f', head), 'last', stamp)
if ARGV[3] ~= '' then
  local exp = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'exp', string.format('%.0f', exp))
  redis.call('PEXPIREAT', KEYS[1], exp)
  redis.call('PEXPIREAT', KEYS[2], exp)
elseif meta[2] then
  redis.call('PEXPIREAT', KEYS[2], tonumber(meta[2]))
end
if raise then
  redis.call('SET', KEYS[3], raise)
end
announce(ARGV[4], ARGV[5], KEYS[1])
return {'ok', string.format('%.0f', head)}
