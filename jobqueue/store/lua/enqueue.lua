-- enqueue: store a new PENDING job and queue it.
-- A job due now goes straight to the ready list; a later one into the schedule.
-- When it becomes the type's earliest scheduled job, schedulers are told so they
-- can shorten their sleep. With an idempotency key, the first job enqueued with
-- it (within the window) is returned instead of a new one, atomically, however
-- many duplicates arrive at once. A retried call (same id) creates nothing new.
-- KEYS: job, scheduled, ready[, idempotency]
-- ARGV: id, type, payload, execution_time_ms ('' = now), channel, window_ms,
--       stale id (an idempotency key pointing at it counts as absent, because
--       that job has expired), then field, value, ... (the job's options)
-- Returns {'created', created_at, execution_time_ms} | {'duplicate', id of the existing job}.
local job, scheduled, ready, idempotency = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, job_type, payload, at, channel, window_ms, stale = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

if idempotency then
  local existing = redis.call('GET', idempotency)
  if existing and existing ~= stale then
    return {'duplicate', existing}
  end
end
if redis.call('EXISTS', job) == 1 then
  return {'duplicate', id}
end
local now = now_ms()
local execution_time = tonumber(at) or now
redis.call('HSET', job,
  'id', id, 'type', job_type, 'payload', payload, 'status', PENDING,
  'execution_time_ms', int(execution_time), 'created_at', int(now), 'updated_at', int(now),
  'attempt', 0, 'lease_token', 0)
for i = 8, #ARGV, 2 do
  redis.call('HSET', job, ARGV[i], ARGV[i + 1])
end
if idempotency then
  redis.call('SET', idempotency, id, 'PX', window_ms)
end
if execution_time <= now then
  redis.call('LPUSH', ready, id)
else
  schedule(scheduled, id, execution_time, channel, job_type)
end
return {'created', now, execution_time}
