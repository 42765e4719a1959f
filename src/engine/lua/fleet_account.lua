-- fleet_account.lua: one write of a pod's record and of the spend since it was last
-- accounted, fenced by the fleet's lease (a deposed leader's late write changes nothing).
-- ARGV: prefix, holder id ('' for an operator's manual rent or release: not fenced), pod
-- name, record JSON ('' removes the pod), dollars, UTC day (YYYY-MM-DD), then pairs of a
-- pipeline run's id and its share of those dollars (`fleet:spend:runs`, kept after the run).
-- Returns 1 when written, 0 when the caller no longer leads.
local me, name, rec, dollars, day = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if me ~= '' and redis.call('GET', key('fleet', 'leader')) ~= me then
  return 0
end
if rec == '' then
  redis.call('HDEL', key('fleet', 'pods'), name)
else
  redis.call('HSET', key('fleet', 'pods'), name, rec)
end
local d = tonumber(dollars)
if d and d > 0 then
  redis.call('HINCRBYFLOAT', key('fleet', 'spend', 'pods'), name, dollars)
  local dk = key('fleet', 'spend', 'day', day)
  redis.call('INCRBYFLOAT', dk, dollars)
  redis.call('EXPIRE', dk, 40 * 86400)
end
for i = 7, #ARGV - 1, 2 do
  local share = tonumber(ARGV[i + 1])
  if share and share > 0 then
    redis.call('HINCRBYFLOAT', key('fleet', 'spend', 'runs'), ARGV[i], ARGV[i + 1])
  end
end
return 1
