-- session_clear.lua: clears a bot's session unless work is in flight.
-- ARGV: prefix, bot. Returns {'busy', active} or {'cleared', experiments}.
local bot = ARGV[2]
local active = prune(bot)
if active > 0 then return {'busy', active} end
local n = redis.call('HLEN', key('bot', bot, 'experiments'))
redis.call('DEL', key('bot', bot, 'session'), key('bot', bot, 'experiments'), key('bot', bot, 'active'))
redis.call('ZREM', key('bots'), bot)
return {'cleared', n}
