-- Every checkpoint of a thread as flat (id, content, created_at, writes...) groups, for
-- copy_thread. Each group is: id, content, created_at, n, then n write jsons.
-- KEYS: 1 content hash, 2 created-at hash, 3 ids zset
-- ARGV: 1 key prefix of writes hashes
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local writes = redis.call('HGETALL', ARGV[1] .. id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
  out[#out + 1] = tostring(#writes)
  for _, v in ipairs(writes) do
    out[#out + 1] = v
  end
end
return out
