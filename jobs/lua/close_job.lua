-- KEYS: job, active index, outputs, summary
-- ARGV: job_id, new state ('cancelled' | 'failed'), reason code, reason, now, purge ('1': forget the committed
--       results and row errors too), then field/value pairs recorded with the new state (what arrived of an
--       upload, ...)
-- Closes an open job: chunks not yet committed will be skipped (the caller deletes their staged inputs, and
-- on a purge every file of the job). A purge is for a job whose input never arrived whole: no partial result
-- is shown.
-- Returns the job's state after the call, or 'gone'.
local job, active, outputs, summary = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, new_state, code, reason, now, purge = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local closed = unless_open(redis.call('HGET', job, 'state'))
if closed then
    return closed
end
redis.call('HSET', job, 'state', new_state, 'reason_code', code, 'reason', reason, 'finished_at', now)
if #ARGV > 6 then
    redis.call('HSET', job, unpack(ARGV, 7))
end
redis.call('ZREM', active, job_id)
if purge == '1' then
    redis.call('DEL', outputs)
    redis.call('HSET', job, 'purged_at', now)
    -- The job summary counted the purged chunks: it goes with them.
    redis.call('DEL', summary)
end
return new_state
