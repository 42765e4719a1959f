-- cron_fire.lua: fires one schedule exactly once. ARGV: prefix, ttl ms, name,
-- expected next fire ms, new next fire ms, job type, job id, envelope.
-- Compare-and-set on the schedule's next-fire score: of any number of
-- schedulers that saw the same due time, only the first moves it and enqueues;
-- the job id is derived from (name, fire time), so even a replay cannot duplicate.
-- Returns 1 fired, 0 someone else did (or the schedule changed).
local ttl, name, expected, new_next = tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5])
local nk = key('cron', 'next')
local cur = redis.call('ZSCORE', nk, name)
if not cur or tonumber(cur) ~= tonumber(expected) then return 0 end
redis.call('ZADD', nk, new_next, name)
local now = now_ms()
enqueue_one(now, ARGV[6], ARGV[7], ARGV[8], 'cron:' .. name .. ':' .. expected, now, ttl, '')
redis.call('HSET', key('cron', 'last'), name, expected)
return 1
