-- KEYS: job, chunks
-- ARGV: index, kind (csv | ndjson | arrow), bytes, records ('' = not known until a worker parses it), now
-- Registers a chunk whose staged input was just written to the blob store.
-- Returns 'staged', 'duplicate' (index already staged), 'sealed', a closed state, or 'gone'.
local job, chunks = KEYS[1], KEYS[2]
local index, kind, bytes, records, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local closed = unless_open(redis.call('HGET', job, 'state'))
if closed then
    return closed
end
if redis.call('HGET', job, 'sealed') == '1' then
    return 'sealed'
end
if redis.call('HSETNX', chunks, index, kind .. ',' .. bytes .. ',' .. records) == 0 then
    return 'duplicate'
end
redis.call('EXPIREAT', chunks, redis.call('HGET', job, 'expires_at'))
if records ~= '' then
    redis.call('HINCRBY', job, 'rows_staged', records)
end
redis.call('HINCRBY', job, 'bytes_staged', bytes)
redis.call('HINCRBY', job, 'chunks_staged', 1)
redis.call('HSET', job, 'upload_heartbeat', now, 'last_activity', now)
return 'staged'
