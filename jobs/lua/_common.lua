-- Shared helpers, prepended to every script by jobs.job_store.
local function is_open(state)
    return state == 'queued' or state == 'running'
end

-- What a script that only changes open jobs answers: 'gone' for a job that expired, the state of a closed
-- one, nil for an open one.
local function unless_open(state)
    if not state then
        return 'gone'
    end
    if not is_open(state) then
        return state
    end
    return nil
end

-- Push a shared index key's expiry out to at least exp_ms (never shorten it).
local function extend_to(key, exp_ms, now_ms)
    local pttl = redis.call('PTTL', key)
    if pttl < 0 or now_ms + pttl < exp_ms then
        redis.call('PEXPIREAT', key, exp_ms)
    end
end

-- Succeed the job when it is sealed and every chunk has committed.
local function maybe_finish(job, active, job_id, now)
    local f = redis.call('HMGET', job, 'sealed', 'chunks_done', 'chunks_total', 'rows_failed')
    if f[1] ~= '1' or tonumber(f[2] or '0') < tonumber(f[3] or '0') then
        return false
    end
    local outcome = 'all_rows_scored'
    if tonumber(f[4] or '0') > 0 then
        outcome = 'some_rows_failed'
    end
    redis.call('HSET', job, 'state', 'succeeded', 'outcome', outcome, 'finished_at', now)
    redis.call('ZREM', active, job_id)
    return true
end
