-- fleet_reserve.lua: records a new pod only if it keeps within the fleet's budgets, in one
-- step, so that rentals from several processes at once (the autoscaler, `fleet rent`, the
-- bridge, agents) cannot each pass a check made on the same snapshot and together exceed it.
-- ARGV: prefix, holder id ('' : not fenced), pod name, record JSON (with its `rate` in $/h),
-- budget per hour ($/h), budget per day ($), UTC day (YYYY-MM-DD).
-- The pods' rate now is the sum of the recorded pods' `rate`; a pod is paid by the hour, so
-- the day must hold today's spend plus the next hour of every pod, the new one included.
-- Returns {1, rate now, spent today} when recorded, {0, ...} when the caller no longer leads,
-- {-1, ...} over the hourly budget, {-2, ...} over the daily budget (rates as strings).
local me, name, rec = ARGV[2], ARGV[3], ARGV[4]
local per_hour, per_day, day = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local pods = key('fleet', 'pods')
local rate_now = 0
local all = redis.call('HGETALL', pods)
for i = 1, #all, 2 do
  if all[i] ~= name then
    local ok, r = pcall(cjson.decode, all[i + 1])
    if ok and type(r) == 'table' and tonumber(r.rate) then rate_now = rate_now + tonumber(r.rate) end
  end
end
local spent = tonumber(redis.call('GET', key('fleet', 'spend', 'day', day)) or '0') or 0
local out = function(code) return {code, tostring(rate_now), tostring(spent)} end
if me ~= '' and redis.call('GET', key('fleet', 'leader')) ~= me then
  return out(0)
end
local ok, new = pcall(cjson.decode, rec)
local rate = (ok and type(new) == 'table' and tonumber(new.rate)) or 0
if rate_now + rate > per_hour + 1e-9 then return out(-1) end
if spent + rate_now + rate > per_day + 1e-9 then return out(-2) end
redis.call('HSET', pods, name, rec)
return out(1)
