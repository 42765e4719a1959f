-- 0002: the pipeline-run semaphore starts with 10 permits unless already set.
-- ARGV: prefix.
local P = ARGV[1]
return redis.call('SET', '{' .. P .. '}:sem:pipeline:limit', 10, 'NX') and 1 or 0
