-- sem_acquire.lua: takes a permit or a place in line. ARGV: prefix, name, holder,
-- lease ms, wait (1 = join the line, 0 = refuse unless a permit is free now),
-- waiter ttl ms, default limit.
-- Holders are a ZSET scored by lease expiry (server clock); waiters are a ZSET
-- scored by a ticket that only grows, so the line is first come, first served.
-- A holder or waiter that stops renewing drops out when its expiry passes.
-- Returns {1, fence, 0} granted | {0, 0, position} waiting | {0, 0, -1} refused.
local name, holder = ARGV[2], ARGV[3]
local lease, wait, wttl = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local hk, fk, qk = key('sem', name, 'holders'), key('sem', name, 'fences'), key('sem', name, 'queue')
local qek = key('sem', name, 'qexp')
local now = now_ms()
for _, h in ipairs(redis.call('ZRANGEBYSCORE', hk, '-inf', now)) do
  redis.call('ZREM', hk, h)
  redis.call('HDEL', fk, h)
  emit(now, 'permit_expired', 'semaphore', h, {'name', name})
end
for _, w in ipairs(redis.call('ZRANGEBYSCORE', qek, '-inf', now)) do
  redis.call('ZREM', qek, w)
  redis.call('ZREM', qk, w)
end
local limit = tonumber(redis.call('GET', key('sem', name, 'limit')) or ARGV[7])
if redis.call('ZSCORE', hk, holder) then
  redis.call('ZADD', hk, 'XX', now + lease, holder)
  return {1, tonumber(redis.call('HGET', fk, holder)), 0}
end
local free = limit - redis.call('ZCARD', hk)
local pos = redis.call('ZRANK', qk, holder)
if not pos then
  if not wait and redis.call('ZCARD', qk) >= free then return {0, 0, -1} end
  redis.call('ZADD', qk, redis.call('INCR', key('sem', name, 'ticket')), holder)
  pos = redis.call('ZRANK', qk, holder)
end
if pos < free then
  redis.call('ZREM', qk, holder)
  redis.call('ZREM', qek, holder)
  local fence = redis.call('INCR', key('sem', name, 'fence'))
  redis.call('ZADD', hk, now + lease, holder)
  redis.call('HSET', fk, holder, fence)
  emit(now, 'permit_acquired', 'semaphore', holder, {'name', name, 'fence', fence})
  return {1, fence, 0}
end
if not wait then
  redis.call('ZREM', qk, holder)
  return {0, 0, -1}
end
redis.call('ZADD', qek, now + wttl, holder)
return {0, 0, pos + 1}
