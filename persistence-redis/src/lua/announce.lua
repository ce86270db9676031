-- Announces a change of a session for live tails: on a node `PUBLISH channel meta-key`
-- (one channel per prefix, the message says which session), on a cluster
-- `SPUBLISH session-channel meta-key` (the channel is in the session's slot). An empty
-- command announces nothing.
local function announce(command, channel, meta)
  if command == 'PUBLISH' or command == 'SPUBLISH' then
    redis.call(command, channel, meta)
  end
end
