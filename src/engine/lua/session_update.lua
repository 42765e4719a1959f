-- session_update.lua: writes back a synced experiment record only if it still
-- exists (a cleared session stays cleared). ARGV: prefix, bot, experiment id, record JSON.
local ek = key('bot', ARGV[2], 'experiments')
if redis.call('HEXISTS', ek, ARGV[3]) == 1 then redis.call('HSET', ek, ARGV[3], ARGV[4]) return 1 end
return 0
