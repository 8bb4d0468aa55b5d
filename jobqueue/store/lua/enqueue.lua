-- enqueue: store a new PENDING job and queue it.
-- A job due now goes straight to the ready list; a later one into the schedule.
-- When it becomes the type's earliest scheduled job, schedulers are told so they
-- can shorten their sleep.
-- KEYS: job, scheduled, ready
-- ARGV: id, type, payload, execution_time_ms ('' = now), channel
-- Returns {created_at, execution_time_ms}, or an error when the id exists.
local job, scheduled, ready = KEYS[1], KEYS[2], KEYS[3]
local id, job_type, payload, at, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('EXISTS', job) == 1 then
  return redis.error_reply('EXISTS job id already in use')
end
local now = now_ms()
local execution_time = tonumber(at) or now
redis.call('HSET', job,
  'id', id, 'type', job_type, 'payload', payload, 'status', PENDING,
  'execution_time_ms', int(execution_time), 'created_at', int(now), 'updated_at', int(now),
  'attempt', 0, 'lease_token', 0)
if execution_time <= now then
  redis.call('LPUSH', ready, id)
else
  redis.call('ZADD', scheduled, int(execution_time), id)
  if redis.call('ZRANGE', scheduled, 0, 0)[1] == id then
    redis.call('PUBLISH', channel, job_type)
  end
end
return {now, execution_time}
