-- principal_add.lua: gives a bot (or a read-only viewer) its API key, stored by hash.
-- ARGV: prefix, bot, key hash (hex SHA-256), record JSON, lookup JSON, rotate (0/1).
-- `principals` maps bot -> record (with its key's hash); `principals:keys` maps key hash ->
-- {bot, role}, what the bridge reads per request. Both change together, here.
-- Returns {'exists'} when the bot has a key and rotate is 0, else {'added'} or
-- {'rotated'} (the bot's old key stops working in the same step).
local bot, hash, record, lookup, rotate = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local old = redis.call('HGET', key('principals'), bot)
local outcome = 'added'
if old then
  if rotate ~= '1' then return {'exists'} end
  local ok, rec = pcall(cjson.decode, old)
  if ok and type(rec) == 'table' and type(rec.key_sha256) == 'string' then
    redis.call('HDEL', key('principals', 'keys'), rec.key_sha256)
  end
  outcome = 'rotated'
end
redis.call('HSET', key('principals'), bot, record)
redis.call('HSET', key('principals', 'keys'), hash, lookup)
return {outcome}
