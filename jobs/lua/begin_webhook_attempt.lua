-- KEYS: job
-- ARGV: attempt, now, stale_after (s)
-- Counts delivery attempt `attempt` once: returns 1 when the caller must make it, 0 for a duplicate message
-- (the attempt is made or being made elsewhere) or a delivery that already ended. An attempt that started
-- more than stale_after ago and recorded nothing died with its worker and may be made again.
local f = redis.call('HMGET', KEYS[1], 'webhook_state', 'webhook_attempts', 'webhook_attempt_started')
local webhook_state = f[1]
if not webhook_state or webhook_state == 'delivered' or webhook_state == 'failed' or webhook_state == 'refused' then
    return 0
end
local attempt, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local made = tonumber(f[2] or '0')
if made == attempt - 1 or (made == attempt and webhook_state ~= 'retrying' and now - tonumber(f[3] or '0') > tonumber(ARGV[3])) then
    redis.call('HSET', KEYS[1], 'webhook_attempts', attempt, 'webhook_attempt_started', ARGV[2], 'webhook_state', 'sending')
    return 1
end
return 0
