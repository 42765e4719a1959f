-- requeue.lua: moves dead-letter entries back onto their streams. ARGV: prefix, then
-- 4 per entry: dlq entry id, type, job id, fresh envelope (attempt 0).
-- The XDEL decides: an entry already retried or purged is skipped.
-- A letter whose job record is not a hash (overwritten) stays where it is, untouched: the
-- record's type is checked before any write for that letter, and the caller names the key
-- to delete.
-- Returns {moved, then 2 per letter left for its record: dlq entry id, the record's type}
-- (all as strings).
local now = now_ms()
local n = 0
local left = {}
for i = 2, #ARGV, 4 do
  local did, jtype, id, env = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local jk = key('job', id)
  local kind = type_of(jk)
  if kind ~= 'hash' and kind ~= 'none' then
    left[#left + 1] = did
    left[#left + 1] = kind
  elseif redis.call('XDEL', key('dlq'), did) == 1 then
    local sid = redis.call('XADD', key('q', jtype), '*', 'job', env, 'at', now)
    redis.call('PERSIST', jk)
    -- no longer a finished record: retention's count (trim_kept) must not drop it
    redis.call('ZREM', key('kept', 'dead', jtype), id)
    redis.call('HSET', jk, 'id', id, 'type', jtype, 'state', 'waiting', 'env', env,
               'stream_id', sid, 'attempt', 0, 'enqueued_at', now)
    redis.call('HDEL', jk, 'error', 'result', 'finished_at', 'cancel')
    redis.call('HINCRBY', key('stats', jtype), 'requeued', 1)
    emit(now, 'requeued', jtype, id)
    n = n + 1
  end
end
local out = {tostring(n)}
for _, v in ipairs(left) do out[#out + 1] = v end
return out
