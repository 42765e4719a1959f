-- registry_put.lua: stores an authored document (issue 20) under its global name on one shelf
-- of the registry (components, agents or prompt modules).
-- ARGV: prefix, name, caller bot, operator (0/1), record JSON (an object without version,
-- updated_at_ms and owner), most documents one owner may hold on the shelf, then the shelf's
-- three key parts: records hash, owners hash, version counter (e.g. `components`, `owners`,
-- `version`; `agents`, `agents:owners`, `agents:version`).
-- The records hash maps name -> record JSON, the owners hash name -> owner bot, the version
-- counter counts every change of the shelf (workers and caches compare it). A name held by
-- another bot is refused unless the caller is the operator, who may overwrite anything (the
-- owner stays). Returns {'forbidden', owner}, {'full', n}, or {'created'|'updated', version,
-- owner}.
local name, caller, op, rec, most = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local records = key('registry', ARGV[7])
local owners = key('registry', ARGV[8])
local version = key('registry', ARGV[9])
local owner = redis.call('HGET', owners, name)
if owner and owner ~= caller and op ~= '1' then return {'forbidden', owner} end
local outcome = 'updated'
if not owner then
  outcome = 'created'
  owner = caller
  local n = 0
  for _, o in ipairs(redis.call('HVALS', owners)) do
    if o == caller then n = n + 1 end
  end
  if op ~= '1' and n >= most then return {'full', tostring(n)} end
end
local v = redis.call('INCR', version)
local head = '{"version":' .. string.format('%d', v) .. ',"updated_at_ms":' ..
  string.format('%d', now_ms()) .. ',"owner":' .. cjson.encode(owner) .. ','
redis.call('HSET', records, name, head .. string.sub(rec, 2))
redis.call('HSET', owners, name, owner)
return {outcome, tostring(v), owner}
