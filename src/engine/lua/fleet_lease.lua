-- fleet_lease.lua: the GPU pod fleet's leader lease (`synth-city fleet`): take it when free,
-- renew it when held by the caller. ARGV: prefix, holder id, lease ms. Returns 1 while the
-- caller leads, else 0.
local lk = key('fleet', 'leader')
local me, px = ARGV[2], ARGV[3]
local cur = redis.call('GET', lk)
if cur == false then
  redis.call('SET', lk, me, 'PX', px)
  return 1
end
if cur == me then
  redis.call('PEXPIRE', lk, px)
  return 1
end
return 0
