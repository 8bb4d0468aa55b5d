-- claim: turn popped ids into RUNNING jobs under a lease, a batch at a time.
-- The worker moved the ids from `ready` into `popped` (BLMOVE or take); for
-- each, this takes it out of `popped` and, if the job is still PENDING and due,
-- starts a new attempt with a new fencing token and records it in the worker's
-- `held` set. An id the reaper already moved back is 'gone'; a cancelled,
-- finished, expired or not-yet-due job is skipped, so a stale id never blocks
-- the queue. A job enqueued without max_attempts gets the worker's default here.
-- KEYS: popped, suspects, leases, held, job 1, ..., job N
-- ARGV: worker_id, lease_ms, default max_attempts, id 1, ..., id N, then the
-- names of the job hash fields to return
-- Returns, per id: {'ok', value, ...} (the job hash's values of those fields,
-- false where not set) | {'gone'} | {'missing'} | {'skip', status} | {'early'}.
local popped, suspects, leases, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local worker_id, default_attempts = ARGV[1], ARGV[3]
local fields = {unpack(ARGV, #KEYS)}
local now = now_ms()
local started, lease_until = int(now), int(now + tonumber(ARGV[2]))

local function claim(job, id)
  if redis.call('LREM', popped, 1, id) == 0 then
    return {'gone'}
  end
  redis.call('HDEL', suspects, id)
  local state = redis.call('HMGET', job, 'status', 'execution_time_ms', 'max_attempts', 'attempt',
    'lease_token')
  if not state[1] then
    return {'missing'}
  end
  if state[1] ~= PENDING then
    return {'skip', state[1]}
  end
  if tonumber(state[2] or 0) > now then
    return {'early'}  -- a stale copy of a job that waits in the schedule (a retry)
  end
  -- One write for the whole change. A counter that is not a number counts as 0:
  -- the job runs rather than failing the script, and with it the whole batch.
  redis.call('HSET', job, 'status', RUNNING, 'started_at', started, 'updated_at', started,
    'worker_id', worker_id, 'max_attempts', state[3] or default_attempts,
    'attempt', int((tonumber(state[4]) or 0) + 1), 'lease_token', int((tonumber(state[5]) or 0) + 1))
  redis.call('ZADD', leases, lease_until, id)
  redis.call('SADD', held, id)
  local values = redis.call('HMGET', job, unpack(fields))
  table.insert(values, 1, 'ok')
  return values
end

local results = {}
for i = 5, #KEYS do
  results[#results + 1] = claim(KEYS[i], ARGV[i - 1])
end
return results
