-- KEYS: job, committed, outputs, leases, active index, metrics, [summary]
-- ARGV: job_id, index, output ("token,records,has_result,has_errors": the attempt's files in the blob store),
--       rows_scored, rows_failed, records, input bytes, now,
--       scoring seconds ('' = the chunk failed without being scored), latency bucket field ('' = none),
--       [summary counters: see the job summary block below]
-- Commits a chunk exactly once: the name of its output files, counters (the job's and the cluster-wide metrics
-- hash) and the job's state change together, or nothing. Files of an attempt that is not committed here are
-- never referenced: the caller deletes them.
-- Returns 'committed', 'finished' (this commit completed the job), 'ignored' (already committed),
-- a closed state (cancelled/failed: the result is discarded), or 'gone'. A refused commit of an existing job
-- (a late or duplicate attempt, or the job closed meanwhile) is counted in the metrics hash,
-- 'commits_refused:<duplicate|closed>'.
-- The same attempt's commit sent again (its reply was lost to a timeout) answers 'committed' and changes nothing.
local job, committed, outputs, leases, active, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local job_id, index, output = ARGV[1], ARGV[2], ARGV[3]
local rows_scored, rows_failed, records, bytes = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local now, seconds, bucket = ARGV[8], ARGV[9], ARGV[10]
local state = redis.call('HGET', job, 'state')
if not state then
    return 'gone'
end
-- The token names one attempt's files: if they are the committed ones, this is that attempt asking again.
local token = string.match(output, '^[^,]*')
local current = redis.call('HGET', outputs, index)
if current and string.match(current, '^[^,]*') == token then
    return 'committed'
end
-- Whatever the answer, this attempt is over: its lease must not linger for the reaper to requeue.
redis.call('HDEL', leases, index)
if not is_open(state) then
    redis.call('HINCRBY', metrics, 'commits_refused:closed', 1)
    return state
end
if redis.call('SADD', committed, index) == 0 then
    redis.call('HINCRBY', metrics, 'commits_refused:duplicate', 1)
    return 'ignored'
end
local expires_at = redis.call('HGET', job, 'expires_at')
redis.call('EXPIREAT', committed, expires_at)
redis.call('HSET', outputs, index, output)
redis.call('EXPIREAT', outputs, expires_at)
-- Rows are numbered globally when read: a chunk's first row is the sum of the records of the chunks before it.
redis.call('HINCRBY', job, 'rows_read', records)
redis.call('HINCRBY', job, 'bytes_done', bytes)
redis.call('HINCRBY', job, 'rows_scored', rows_scored)
redis.call('HINCRBY', job, 'rows_failed', rows_failed)
redis.call('HINCRBY', job, 'chunks_done', 1)
redis.call('HSET', job, 'last_activity', now)
-- Counted here and only here, past the exactly-once guard: a duplicate delivery never counts twice.
-- last_commit says the cluster is making progress: a job waiting behind a backlog is not stuck.
redis.call('HSET', metrics, 'last_commit', now)
redis.call('HINCRBY', metrics, 'rows_scored', rows_scored)
redis.call('HINCRBY', metrics, 'rows_failed', rows_failed)
if seconds == '' then
    redis.call('HINCRBY', metrics, 'chunks_failed', 1)
else
    redis.call('HINCRBY', metrics, 'chunks_scored', 1)
    redis.call('HINCRBY', metrics, bucket, 1)
    redis.call('HINCRBYFLOAT', metrics, 'chunk_seconds_sum', seconds)
    redis.call('HINCRBY', metrics, 'chunk_seconds_count', 1)
end
-- Job summary (jobs.summary): the chunk's counts and sums, merged past the exactly-once guard, so a chunk
-- is counted once. KEYS[7]: the summary hash; ARGV[11]: how many (field, integer) pairs follow, then
-- (field, float text) pairs to the end. Values are passed on as text: no Lua number rounds them.
local summary = KEYS[7]
if summary and ARGV[11] then
    local n_counts = tonumber(ARGV[11])
    for i = 12, 11 + 2 * n_counts, 2 do
        redis.call('HINCRBY', summary, ARGV[i], ARGV[i + 1])
    end
    for i = 12 + 2 * n_counts, #ARGV, 2 do
        redis.call('HINCRBYFLOAT', summary, ARGV[i], ARGV[i + 1])
    end
    redis.call('EXPIREAT', summary, expires_at)
end
-- End of the job summary.
if state == 'queued' then
    redis.call('HSET', job, 'state', 'running', 'started_at', now)
end
if maybe_finish(job, active, job_id, now) then
    return 'finished'
end
return 'committed'
