-- Replaces a hash field's value only while it is the one read (a checkpoint's content
-- or a pending write): what re-encrypting stored payloads needs next to writers.
-- KEYS: 1 the hash
-- ARGV: 1 field, 2 the value read, 3 the new value
-- Returns 1 when replaced, 0 when the field is absent or holds another value.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
