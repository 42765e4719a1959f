-- run_create.lua: creates a pipeline run and enqueues its first stage job.
-- ARGV: prefix, ttl ms, run id, bot, task json, first job type, job id, envelope.
local ttl, run_id, bot, task = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local rk = key('run', run_id)
if redis.call('EXISTS', rk) == 1 then return 0 end
local now = now_ms()
redis.call('HSET', rk, 'id', run_id, 'bot', bot, 'state', 'queued', 'stage', ARGV[6],
           'attempt', 0, 'task', task, 'created_at', now, 'updated_at', now, 'job', ARGV[7])
redis.call('ZADD', key('runs'), now, run_id)
enqueue_one(now, ARGV[6], ARGV[7], ARGV[8], '', now, ttl, bot)
emit(now, 'run_created', 'run', run_id, {'stage', ARGV[6]})
return 1
