-- KEYS: job, chunks, staged input
-- ARGV: index, payload, first_row, rows, now
-- Returns 'staged', 'duplicate' (index already staged), 'sealed', a closed state, or 'gone'.
local job, chunks, staged = KEYS[1], KEYS[2], KEYS[3]
local index, payload, first_row, rows, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local state = redis.call('HGET', job, 'state')
if not state then
    return 'gone'
end
if not is_open(state) then
    return state
end
if redis.call('HGET', job, 'sealed') == '1' then
    return 'sealed'
end
if redis.call('HSETNX', chunks, index, first_row .. ',' .. rows) == 0 then
    return 'duplicate'
end
local expires_at = redis.call('HGET', job, 'expires_at')
redis.call('EXPIREAT', chunks, expires_at)
redis.call('SET', staged, payload, 'EXAT', expires_at)
redis.call('HINCRBY', job, 'rows_staged', rows)
redis.call('HINCRBY', job, 'chunks_staged', 1)
redis.call('HSET', job, 'upload_heartbeat', now, 'last_activity', now)
return 'staged'
