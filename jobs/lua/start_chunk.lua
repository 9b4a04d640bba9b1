-- KEYS: job, committed, attempts, leases, reasons
-- ARGV: index, lease, now, max_attempts, model_version, model_sha256
-- Returns {'run', attempt} | {'exhausted', attempts, reason} | {'committed'} | {'closed', state} | {'gone'}.
local job, committed, attempts, leases, reasons = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local index, lease, now, max_attempts = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local state = redis.call('HGET', job, 'state')
if not state then
    return {'gone'}
end
if not is_open(state) then
    return {'closed', state}
end
if redis.call('SISMEMBER', committed, index) == 1 then
    return {'committed'}
end
local expires_at = redis.call('HGET', job, 'expires_at')
-- A lease still present means the previous attempt vanished without a result: say so.
local previous = redis.call('HGET', leases, index)
if previous then
    local p = {}
    for part in string.gmatch(previous, '[^|]+') do
        p[#p + 1] = part
    end
    redis.call('HSET', reasons, index,
        'worker process ' .. (p[2] or '?') .. ' on ' .. (p[1] or '?') .. ' was lost during attempt ' .. (p[4] or '?'))
    redis.call('EXPIREAT', reasons, expires_at)
end
local attempt = redis.call('HINCRBY', attempts, index, 1)
redis.call('EXPIREAT', attempts, expires_at)
if attempt > max_attempts then
    redis.call('HDEL', leases, index)
    local reason = redis.call('HGET', reasons, index) or 'no reason recorded'
    return {'exhausted', attempt - 1, reason}
end
redis.call('HSET', leases, index, lease .. '|' .. attempt)
redis.call('EXPIREAT', leases, expires_at)
if state == 'queued' then
    redis.call('HSET', job, 'state', 'running', 'started_at', now)
end
redis.call('HSETNX', job, 'model_version', ARGV[5])
redis.call('HSETNX', job, 'model_sha256', ARGV[6])
redis.call('HSET', job, 'last_activity', now)
return {'run', attempt}
