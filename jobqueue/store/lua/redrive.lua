-- redrive: run a FAILED or CANCELLED job again (the RetryJob RPC).
-- It becomes PENDING and due now, with attempts counted from zero; it leaves the
-- failed index and no longer expires. last_error keeps the previous error, and
-- last_error_attempt the attempt it ended (now above `attempt`).
-- include: common, outcomes
-- KEYS: job, failed, ready
-- ARGV: id
-- Returns {OK} | {NOT_FOUND} | {WRONG_STATE, status}.
local id = ARGV[1]

local status = redis.call('HGET', job, 'status')
if not status then
  return {NOT_FOUND}
end
if status ~= FAILED and status ~= CANCELLED then
  return {WRONG_STATE, status}
end
local now = int(now_ms())
redis.call('HSET', job, 'status', PENDING, 'attempt', 0, 'execution_time_ms', now, 'updated_at', now)
redis.call('HDEL', job, 'finished_at')
redis.call('PERSIST', job)
redis.call('ZREM', failed, id)
redis.call('LPUSH', ready, id)
return {OK}
