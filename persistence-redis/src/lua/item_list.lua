-- Up to ARGV[3] live items with key > ARGV[1] ('' none) starting with ARGV[2], in key
-- order, as flat (key, envelope json, meta) triples.
-- KEYS: 1 values hash, 2 meta hash, 3 keys zset
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local prefix, limit = ARGV[2], tonumber(ARGV[3])
local from = '[' .. prefix
if ARGV[1] ~= '' and ARGV[1] >= prefix then
  from = '(' .. ARGV[1]
end
local out, count = {}, 0
while count < limit do
  local keys = redis.call('ZRANGEBYLEX', KEYS[3], from, '+', 'LIMIT', 0, 100)
  if #keys == 0 then
    break
  end
  for _, key in ipairs(keys) do
    if string.sub(key, 1, #prefix) ~= prefix then
      return out
    end
    local meta = redis.call('HGET', KEYS[2], key)
    local e = meta and string.match(meta, '|(%d*)$')
    if meta and (e == '' or tonumber(e) > now) then
      out[#out + 1] = key
      out[#out + 1] = redis.call('HGET', KEYS[1], key)
      out[#out + 1] = meta
      count = count + 1
      if count >= limit then
        return out
      end
    end
    from = '(' .. key
  end
end
return out
