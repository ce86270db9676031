-- A checkpoint (the latest when ARGV[1] is '') with its pending writes, or nil.
-- KEYS: 1 content hash, 2 created-at hash, 3 ids zset
-- ARGV: 1 id or '', 2 key prefix of writes hashes ('<thread base>:w:')
local id = ARGV[1]
if id == '' then
  id = redis.call('ZREVRANGEBYLEX', KEYS[3], '+', '-', 'LIMIT', 0, 1)[1]
  if not id then
    return nil
  end
end
local content = redis.call('HGET', KEYS[1], id)
if not content then
  return nil
end
return {content, redis.call('HGET', KEYS[2], id), redis.call('HVALS', ARGV[2] .. id)}
