-- registry_delete.lua: removes an authored document by name from one shelf of the registry.
-- ARGV: prefix, name, caller bot, operator (0/1), then the shelf's three key parts: records
-- hash, owners hash, version counter (as registry_put.lua).
-- Returns {'missing'}, {'forbidden', owner} (another bot's, caller not the operator), or
-- {'deleted', version, owner}; a removal bumps the shelf's version like a write.
local name, caller, op = ARGV[2], ARGV[3], ARGV[4]
local records = key('registry', ARGV[5])
local owners = key('registry', ARGV[6])
local version = key('registry', ARGV[7])
local owner = redis.call('HGET', owners, name)
if not owner then return {'missing'} end
if owner ~= caller and op ~= '1' then return {'forbidden', owner} end
redis.call('HDEL', records, name)
redis.call('HDEL', owners, name)
local v = redis.call('INCR', version)
return {'deleted', tostring(v), owner}
