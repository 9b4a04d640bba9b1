-- KEYS: job, tenant index, active index, live index
-- ARGV: job_id, created_us, expires_at (s), now_ms, trim_before_us, field1, value1, ...
local job, tenant, active, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, created_us, expires_at = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if redis.call('EXISTS', job) == 1 then
    return 0
end
local fields = {}
for i = 6, #ARGV do
    fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', job, unpack(fields))
redis.call('EXPIREAT', job, expires_at)
redis.call('ZREMRANGEBYSCORE', tenant, '-inf', '(' .. ARGV[5])
redis.call('ZADD', tenant, created_us, job_id)
redis.call('ZADD', active, created_us, job_id)
extend_to(tenant, expires_at * 1000, now_ms)
extend_to(active, expires_at * 1000, now_ms)
-- Every live job, scored by expiry, so jobs can be counted by state without scanning keys.
redis.call('ZREMRANGEBYSCORE', live, '-inf', '(' .. math.floor(now_ms / 1000))
redis.call('ZADD', live, expires_at, job_id)
extend_to(live, expires_at * 1000, now_ms)
return 1
