-- session_touch.lua: refreshes a bot's session (creating it) and counts requests.
-- ARGV: prefix, bot, ttl s, requests to add. Returns the active count.
local active = refresh(ARGV[2], tonumber(ARGV[3]))
redis.call('HINCRBY', key('bot', ARGV[2], 'session'), 'requests', tonumber(ARGV[4]))
return active
