-- sem_renew.lua: extends a permit's lease. ARGV: prefix, name, holder, fence, lease ms.
-- Returns 1 renewed, 0 lost (expired and taken, or released).
local name, holder, fence, lease = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local hk, fk = key('sem', name, 'holders'), key('sem', name, 'fences')
local now = now_ms()
local exp = redis.call('ZSCORE', hk, holder)
if exp and tonumber(exp) > now and redis.call('HGET', fk, holder) == fence then
  redis.call('ZADD', hk, 'XX', now + lease, holder)
  return 1
end
return 0
