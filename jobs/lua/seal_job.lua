-- KEYS: job, active index
-- ARGV: job_id, rows_total ('' = counted by the workers as they parse), chunks_total, now, then field/value
--       pairs recorded with the seal (bytes, digest)
-- Marks the upload complete; succeeds the job at once if every chunk already committed, fails it if the
-- totals disagree with what was staged.
-- Returns the job's state after the call, or 'gone'.
local job, active = KEYS[1], KEYS[2]
local job_id, rows_total, chunks_total, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local state = redis.call('HGET', job, 'state')
if not state then
    return 'gone'
end
if not is_open(state) or redis.call('HGET', job, 'sealed') == '1' then
    return state
end
redis.call('HSET', job, 'sealed', '1', 'rows_total', rows_total, 'chunks_total', chunks_total,
    'upload_heartbeat', now, 'last_activity', now)
if #ARGV > 4 then
    redis.call('HSET', job, unpack(ARGV, 5))
end
local staged = redis.call('HMGET', job, 'chunks_staged', 'rows_staged')
if tonumber(staged[1] or '0') ~= tonumber(chunks_total)
        or (rows_total ~= '' and tonumber(staged[2] or '0') ~= tonumber(rows_total)) then
    -- The job could never complete (or would complete without some rows): say so now rather than hang.
    redis.call('HSET', job, 'state', 'failed', 'finished_at', now, 'reason_code', 'upload_mismatch', 'reason',
        'upload sealed with ' .. chunks_total .. ' chunks / ' .. (rows_total ~= '' and rows_total or '?') .. ' rows but ' ..
        (staged[1] or '0') .. ' chunks / ' .. (staged[2] or '0') .. ' rows were staged')
    redis.call('ZREM', active, job_id)
    return 'failed'
end
maybe_finish(job, active, job_id, now)
return redis.call('HGET', job, 'state')
