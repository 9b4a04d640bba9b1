-- KEYS: job, committed, chunks, active index, summary
-- ARGV: job_id, new state ('cancelled' | 'failed'), reason code, reason, now, purge ('1': delete the
--       committed results and row errors too), staged key prefix, result key prefix, errors key prefix,
--       then field/value pairs recorded with the new state (what arrived of an upload, ...)
-- Closes an open job and drops the staged inputs of chunks that never committed (they will be skipped); a
-- purge also drops what was scored, for a job whose input never arrived whole: no partial result is shown.
-- Returns the job's state after the call, or 'gone'.
local job, committed, chunks, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, new_state, code, reason, now, purge = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local staged_prefix, result_prefix, errors_prefix = ARGV[7], ARGV[8], ARGV[9]
local state = redis.call('HGET', job, 'state')
if not state then
    return 'gone'
end
if not is_open(state) then
    return state
end
redis.call('HSET', job, 'state', new_state, 'reason_code', code, 'reason', reason, 'finished_at', now)
if #ARGV > 9 then
    redis.call('HSET', job, unpack(ARGV, 10))
end
redis.call('ZREM', active, job_id)
for _, index in ipairs(redis.call('HKEYS', chunks)) do
    if purge == '1' then
        redis.call('DEL', staged_prefix .. index, result_prefix .. index, errors_prefix .. index)
    elseif redis.call('SISMEMBER', committed, index) == 0 then
        redis.call('DEL', staged_prefix .. index)
    end
end
if purge == '1' then
    redis.call('HSET', job, 'purged_at', now)
    -- The job summary counted the purged chunks: it goes with them.
    redis.call('DEL', KEYS[5])
end
return new_state
