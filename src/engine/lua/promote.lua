-- promote.lua: moves due delayed jobs onto their streams. ARGV: prefix, limit.
-- Safe to run from every worker at once: ZREM decides who moves a job.
-- A job whose record is not a hash (overwritten while it waited) is dead-lettered with
-- that reason instead of failing the call after its first writes; its envelope, type and
-- flow parent lived in the record and are lost with it (the letter cannot be retried).
-- Returns {moved, ms until the next one is due (-1 = none)}.
local limit = tonumber(ARGV[2])
local now = now_ms()
local dk = key('delayed')
local ids = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, limit)
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', dk, id) == 1 then
    local jk = key('job', id)
    local kind = type_of(jk)
    if kind ~= 'hash' and kind ~= 'none' then
      local reason = '`' .. jk .. '` holds a ' .. kind .. ', not a hash (WRONGTYPE): the ' ..
                     'job\'s record was overwritten while it waited to run; its envelope ' ..
                     'is lost with it'
      bury(now, '', id, '', reason, '')
      emit(now, 'dead', '', id, {'error', reason})
    else
      local f = redis.call('HMGET', jk, 'type', 'env', 'state')
      if f[1] then
        redis.call('HINCRBY', key('stats', f[1]), 'delayed_now', -1)
      end
      if f[1] and f[2] and f[3] == 'delayed' then
        local sid = redis.call('XADD', key('q', f[1]), '*', 'job', f[2], 'at', now)
        redis.call('HSET', jk, 'state', 'waiting', 'stream_id', sid)
        emit(now, 'waiting', f[1], id)
        moved = moved + 1
      end
    end
  end
end
local nxt = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
if nxt[2] then
  return {moved, math.max(0, tonumber(nxt[2]) - now)}
end
return {moved, -1}
