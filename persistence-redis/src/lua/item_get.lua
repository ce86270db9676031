-- Live items among ARGV keys, as flat (key, envelope json, meta) triples; expired and
-- missing ones are left out.
-- KEYS: 1 values hash, 2 meta hash
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i = 1, #ARGV do
  local meta = redis.call('HGET', KEYS[2], ARGV[i])
  if meta then
    local e = string.match(meta, '|(%d*)$')
    if e == '' or tonumber(e) > now then
      out[#out + 1] = ARGV[i]
      out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[i])
      out[#out + 1] = meta
    end
  end
end
return out
