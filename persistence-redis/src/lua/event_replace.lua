-- Replaces an event's member (ordinal|time|json) only while it is the one read. The
-- new member is added before the old one goes, so the set is never empty and keeps its
-- TTL. A trimmed event, or a deleted or expired session (its keys are gone), is not
-- written.
-- KEYS: 1 events zset (score = ordinal)
-- ARGV: 1 ordinal, 2 the member read, 3 the new member
-- Returns 1 when replaced, 0 otherwise.
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) ~= tonumber(ARGV[1]) then
  return 0
end
if ARGV[2] == ARGV[3] then
  return 1
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[2])
return 1
