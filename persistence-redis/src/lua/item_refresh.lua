-- Restarts the TTL of live items and returns them, as flat (key, envelope json, meta)
-- triples in the order given (absent and expired items are left out; an item without
-- expiry is returned as it is). The TTL is the item's stored one when the ttls record
-- names the item's last write ("updated|ttl"), else the time from its last write to its
-- expiry (an item written before TTLs were stored, or put by such a library since),
-- which is then stored.
-- KEYS: 1 values hash, 2 meta hash, 3 expiry zset, 4 ttls hash
-- ARGV: the item keys
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for _, key in ipairs(ARGV) do
  local meta = redis.call('HGET', KEYS[2], key)
  if meta then
    local v, c, u, e = string.match(meta, '^(%d+)|(%d+)|(%d+)|(%d*)$')
    if e ~= '' and tonumber(e) > now then
      local ttl = tonumber(e) - tonumber(u)
      local stored = redis.call('HGET', KEYS[4], key)
      if stored then
        local su, st = string.match(stored, '^(%d+)|(%d+)$')
        if su == u then
          ttl = tonumber(st)
        end
      end
      local exp = string.format('%.0f', now + ttl)
      meta = v .. '|' .. c .. '|' .. u .. '|' .. exp
      redis.call('HSET', KEYS[2], key, meta)
      redis.call('ZADD', KEYS[3], exp, key)
      redis.call('HSET', KEYS[4], key, u .. '|' .. string.format('%.0f', ttl))
      e = exp
    end
    if e == '' or tonumber(e) > now then
      out[#out + 1] = key
      out[#out + 1] = redis.call('HGET', KEYS[1], key)
      out[#out + 1] = meta
    end
  end
end
return out
