-- principal_revoke.lua: takes a bot's API key away (the bridge refuses it from the next
-- request on). ARGV: prefix, bot. Returns 1 when the bot had a key, 0 otherwise.
local bot = ARGV[2]
local old = redis.call('HGET', key('principals'), bot)
if not old then return 0 end
local ok, rec = pcall(cjson.decode, old)
if ok and type(rec) == 'table' and type(rec.key_sha256) == 'string' then
  redis.call('HDEL', key('principals', 'keys'), rec.key_sha256)
end
redis.call('HDEL', key('principals'), bot)
return 1
