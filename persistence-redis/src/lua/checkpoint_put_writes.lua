-- Records pending writes of a task; an existing (task, index) is kept.
-- KEYS: 1 content hash, 2 fence counter, 3 writes hash of this checkpoint
-- ARGV: 1 checkpoint id, 2 fence or '', then pairs (field, write json)
local refused, raise = fence_check(KEYS[2], ARGV[2])
if refused then
  return refused
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return {'notfound', 'checkpoint ' .. ARGV[1] .. ' does not exist'}
end
for i = 3, #ARGV, 2 do
  redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1])
end
if raise then
  redis.call('SET', KEYS[2], raise)
end
return {'ok', ''}
