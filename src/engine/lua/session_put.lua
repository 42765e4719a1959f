-- session_put.lua: stores an experiment of a bot's session, marks work in flight.
-- ARGV: prefix, bot, ttl s, experiment id, record JSON, active member ('' for none).
redis.call('HSET', key('bot', ARGV[2], 'experiments'), ARGV[4], ARGV[5])
if ARGV[6] ~= '' then redis.call('SADD', key('bot', ARGV[2], 'active'), ARGV[6]) end
return refresh(ARGV[2], tonumber(ARGV[3]))
