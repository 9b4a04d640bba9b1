-- KEYS: leases, renewals
-- ARGV: index, lease, now
-- Renews a chunk's lease for the attempt that holds it: records when, for the reaper. Returns 1, or 0 when the
-- lease is no longer the caller's (taken back by the reaper, released, or the chunk committed).
local leases, renewals = KEYS[1], KEYS[2]
local index, lease, now = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', leases, index) ~= lease then
    return 0
end
local ttl = redis.call('PTTL', leases)
redis.call('HSET', renewals, index, now)
if ttl > 0 then
    redis.call('PEXPIRE', renewals, ttl)
end
return 1
