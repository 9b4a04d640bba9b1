-- KEYS: job
-- Marks a closed job's webhook as due, once: returns 1 to the one caller that must queue its delivery,
-- 0 when the job is open, has no callback, or its delivery was claimed already.
local f = redis.call('HMGET', KEYS[1], 'state', 'callback_url')
if not f[1] or is_open(f[1]) or not f[2] or f[2] == '' then
    return 0
end
return redis.call('HSETNX', KEYS[1], 'webhook_state', 'pending')
