-- KEYS: job, outputs
-- ARGV: now
-- Forgets a job's committed results (the caller deletes their files) and records when; never recreates an
-- expired job.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('DEL', KEYS[2])
redis.call('HSETNX', KEYS[1], 'purged_at', ARGV[1])
return 1
