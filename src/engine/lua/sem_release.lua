-- sem_release.lua: gives a permit back, or leaves the line. ARGV: prefix, name, holder,
-- fence ('' when only leaving the line). Returns 1 when a permit was released.
local name, holder, fence = ARGV[2], ARGV[3], ARGV[4]
local hk, fk = key('sem', name, 'holders'), key('sem', name, 'fences')
redis.call('ZREM', key('sem', name, 'queue'), holder)
redis.call('ZREM', key('sem', name, 'qexp'), holder)
if fence ~= '' and redis.call('HGET', fk, holder) == fence then
  redis.call('ZREM', hk, holder)
  redis.call('HDEL', fk, holder)
  emit(now_ms(), 'permit_released', 'semaphore', holder, {'name', name})
  return 1
end
return 0
