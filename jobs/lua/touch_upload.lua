-- KEYS: job
-- ARGV: now
-- Refreshes the heartbeat of an open, unsealed upload (bytes are still arriving between two chunks);
-- never recreates an expired job. Returns 1 when refreshed.
if redis.call('HGET', KEYS[1], 'sealed') ~= '0' or not is_open(redis.call('HGET', KEYS[1], 'state')) then
    return 0
end
redis.call('HSET', KEYS[1], 'upload_heartbeat', ARGV[1])
return 1
