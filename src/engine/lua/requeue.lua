-- requeue.lua: moves dead-letter entries back onto their streams. ARGV: prefix, then
-- 4 per entry: dlq entry id, type, job id, fresh envelope (attempt 0).
-- The XDEL decides: an entry already retried or purged is skipped.
local now = now_ms()
local n = 0
for i = 2, #ARGV, 4 do
  local did, jtype, id, env = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('XDEL', key('dlq'), did) == 1 then
    local sid = redis.call('XADD', key('q', jtype), '*', 'job', env, 'at', now)
    local jk = key('job', id)
    redis.call('PERSIST', jk)
    redis.call('HSET', jk, 'id', id, 'type', jtype, 'state', 'waiting', 'env', env,
               'stream_id', sid, 'attempt', 0, 'enqueued_at', now)
    redis.call('HDEL', jk, 'error', 'result', 'finished_at', 'cancel')
    redis.call('HINCRBY', key('stats', jtype), 'requeued', 1)
    emit(now, 'requeued', jtype, id)
    n = n + 1
  end
end
return n
