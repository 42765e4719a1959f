-- registry_put.lua: stores an authored component (issue 20) under its global name.
-- ARGV: prefix, name, caller bot, operator (0/1), record JSON (an object without version,
-- updated_at_ms and owner), most components one owner may hold.
-- `registry:components` maps name -> record JSON, `registry:owners` name -> owner bot,
-- `registry:version` counts every change (workers and caches compare it). A name held by
-- another bot is refused unless the caller is the operator, who may overwrite anything (the
-- owner stays). Returns {'forbidden', owner}, {'full', n}, or {'created'|'updated', version,
-- owner}.
local name, caller, op, rec, most = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local owner = redis.call('HGET', key('registry', 'owners'), name)
if owner and owner ~= caller and op ~= '1' then return {'forbidden', owner} end
local outcome = 'updated'
if not owner then
  outcome = 'created'
  owner = caller
  local n = 0
  for _, o in ipairs(redis.call('HVALS', key('registry', 'owners'))) do
    if o == caller then n = n + 1 end
  end
  if op ~= '1' and n >= most then return {'full', tostring(n)} end
end
local v = redis.call('INCR', key('registry', 'version'))
local head = '{"version":' .. string.format('%d', v) .. ',"updated_at_ms":' ..
  string.format('%d', now_ms()) .. ',"owner":' .. cjson.encode(owner) .. ','
redis.call('HSET', key('registry', 'components'), name, head .. string.sub(rec, 2))
redis.call('HSET', key('registry', 'owners'), name, owner)
return {outcome, tostring(v), owner}
