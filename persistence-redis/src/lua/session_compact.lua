-- Removes the events through an ordinal and appends events after the head, in one step.
-- The expiry is kept (re-applied to the events set, which the removal may have emptied).
-- KEYS: 1 meta hash, 2 events zset, 3 fence counter (as for session_append.lua)
-- ARGV: 1 expected head or '', 2 fence or '', 3 through (ordinal), 4 and 5 the command
--       and channel announcing the change (as for session_append.lua), then event jsons
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local refused, raise = fence_check(KEYS[3], ARGV[2])
if refused then
  return refused
end
local meta = redis.call('HMGET', KEYS[1], 'head', 'exp', 'closed')
local head = tonumber(meta[1] or '0')
if head == 0 then
  return {'notfound', 'no such session'}
end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= head then
  return {'conflict', 'expected head ' .. ARGV[1] .. ', found ' .. head}
end
local through = tonumber(ARGV[3])
if through > head then
  return {'conflict', 'cannot compact through ordinal ' .. ARGV[3] .. ': the head is ' .. head}
end
if meta[3] then
  return {'closed', 'the session is closed: it takes no more appends'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', through)
local stamp = string.format('%.0f', now)
for i = 6, #ARGV do
  head = head + 1
  redis.call('ZADD', KEYS[2], head, string.format('%.0f', head) .. '|' .. stamp .. '|' .. ARGV[i])
end
redis.call('HSET', KEYS[1], 'head', string.format('%.0f', head), 'last', stamp)
if meta[2] then
  redis.call('PEXPIREAT', KEYS[2], tonumber(meta[2]))
end
if raise then
  redis.call('SET', KEYS[3], raise)
end
announce(ARGV[4], ARGV[5], KEYS[1])
return {'ok', string.format('%.0f', head)}
