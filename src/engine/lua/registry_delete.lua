-- registry_delete.lua: removes an authored component by name.
-- ARGV: prefix, name, caller bot, operator (0/1).
-- Returns {'missing'}, {'forbidden', owner} (another bot's, caller not the operator), or
-- {'deleted', version, owner}; a removal bumps `registry:version` like a write.
local name, caller, op = ARGV[2], ARGV[3], ARGV[4]
local owner = redis.call('HGET', key('registry', 'owners'), name)
if not owner then return {'missing'} end
if owner ~= caller and op ~= '1' then return {'forbidden', owner} end
redis.call('HDEL', key('registry', 'components'), name)
redis.call('HDEL', key('registry', 'owners'), name)
local v = redis.call('INCR', key('registry', 'version'))
return {'deleted', tostring(v), owner}
