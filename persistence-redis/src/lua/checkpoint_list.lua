-- Up to ARGV[2] checkpoints with ids below ARGV[1] ('' for no bound), newest first, as
-- flat (content, created_at) pairs.
-- KEYS: 1 content hash, 2 created-at hash, 3 ids zset
local upper = '+'
if ARGV[1] ~= '' then
  upper = '(' .. ARGV[1]
end
local ids = redis.call('ZREVRANGEBYLEX', KEYS[3], upper, '-', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
end
return out
