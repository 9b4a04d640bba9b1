-- KEYS: job, committed, chunks, active index
-- ARGV: job_id, new state ('cancelled' | 'failed'), reason, now, staged key prefix
-- Closes an open job and drops the staged inputs of chunks that never committed (they will be skipped).
-- Returns the job's state after the call, or 'gone'.
local job, committed, chunks, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, new_state, reason, now, staged_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local state = redis.call('HGET', job, 'state')
if not state then
    return 'gone'
end
if not is_open(state) then
    return state
end
redis.call('HSET', job, 'state', new_state, 'reason', reason, 'finished_at', now)
redis.call('ZREM', active, job_id)
for _, index in ipairs(redis.call('HKEYS', chunks)) do
    if redis.call('SISMEMBER', committed, index) == 0 then
        redis.call('DEL', staged_prefix .. index)
    end
end
return new_state
