-- Deletes all but the ARGV[1] newest checkpoints (ARGV[1] = 0: all) and their writes.
-- Returns how many were deleted.
-- KEYS: 1 content hash, 2 created-at hash, 3 ids zset
-- ARGV: 1 keep, 2 key prefix of writes hashes
local total = redis.call('ZCARD', KEYS[3])
local doomed = total - tonumber(ARGV[1])
if doomed <= 0 then
  return 0
end
local ids = redis.call('ZRANGE', KEYS[3], 0, doomed - 1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', ARGV[2] .. id)
  redis.call('ZREM', KEYS[3], id)
end
return #ids
