-- session_add_active.lua: marks a run or job of the bot as in flight and
-- refreshes the session. ARGV: prefix, bot, ttl s, member.
redis.call('SADD', key('bot', ARGV[2], 'active'), ARGV[4])
return refresh(ARGV[2], tonumber(ARGV[3]))
