-- The info of a session, closing it first when asked.
-- KEYS: 1 meta hash, 2 events zset
-- ARGV: 1 '' (info only), 'close' or 'close-remove' (close, removing the events),
--       2 and 3 the command and channel announcing a close (as for session_append.lua)
-- Reply: {'none'} for an absent session (closing one: {'notfound', message}), else
-- {'ok', head, oldest, created, last, exp, closed}, '' for what is unknown.
local meta = redis.call('HMGET', KEYS[1], 'head', 'created', 'last', 'exp', 'closed')
local head = tonumber(meta[1] or '0')
if head == 0 then
  if ARGV[1] == '' then
    return {'none'}
  end
  return {'notfound', 'no such session'}
end
local closed = meta[5]
if ARGV[1] ~= '' and not closed then
  local t = redis.call('TIME')
  closed = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000))
  redis.call('HSET', KEYS[1], 'closed', closed)
  if ARGV[1] == 'close-remove' then
    redis.call('DEL', KEYS[2])
  end
  announce(ARGV[2], ARGV[3], KEYS[1])
end
local oldest = ''
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if first[2] then
  oldest = string.format('%.0f', tonumber(first[2]))
end
return {'ok', meta[1], oldest, meta[2] or '', meta[3] or '', meta[4] or '', closed or ''}
