-- KEYS: leases, reasons
-- ARGV: index, expected lease, reason
-- Drops a chunk's lease only if it is still the one the caller saw, recording why the attempt ended.
-- Returns 1 when released, 0 when someone else holds or already released it.
local leases, reasons = KEYS[1], KEYS[2]
local index, expected, reason = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', leases, index) ~= expected then
    return 0
end
-- Read the TTL first: deleting the last field deletes the hash and its TTL with it.
local ttl = redis.call('PTTL', leases)
redis.call('HDEL', leases, index)
redis.call('HSET', reasons, index, reason)
if ttl > 0 then
    redis.call('PEXPIRE', reasons, ttl)
end
return 1
