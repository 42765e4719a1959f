-- fleet_unlease.lua: a fleet leader gives its lease up (at shutdown), so a standby takes over
-- at once. ARGV: prefix, holder id. Returns 1 when it held the lease.
local lk = key('fleet', 'leader')
if redis.call('GET', lk) == ARGV[2] then
  return redis.call('DEL', lk)
end
return 0
