-- Deletes the checkpoints whose ids are at most ARGV[1] (ids sort by the time they were
-- minted; the ids set has score 0, so its order is the ids' byte order) and their
-- writes. A checkpoint put meanwhile has a greater id and stays. Returns how many were
-- deleted.
-- KEYS: 1 content hash, 2 created-at hash, 3 ids zset
-- ARGV: 1 the greatest id to delete, 2 key prefix of writes hashes
local ids = redis.call('ZRANGEBYLEX', KEYS[3], '-', '[' .. ARGV[1])
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', ARGV[2] .. id)
  redis.call('ZREM', KEYS[3], id)
end
return #ids
