-- KEYS: job
-- ARGV: now
-- Records when the reaper last requeued the job's orphaned chunks; never recreates an expired job.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'orphans_requeued_at', ARGV[1])
return 1
