-- Prepended to every script by jobqueue/store/scripts.py.
-- Job statuses as stored in the job hash (the proto enum's numbers).
local PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = '1', '2', '3', '4', '5'

-- All times come from the Redis server's clock, so that servers and workers on
-- different machines agree on when a job is due and when a lease expires.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal strings (Lua's tostring would switch to exponents).
local function int(n)
  return string.format('%d', n)
end

-- Puts a job into its type's schedule; when it is the earliest there, wakes the
-- schedulers (they sleep until the earliest job they know of).
local function schedule(scheduled, id, at, channel, job_type)
  redis.call('ZADD', scheduled, int(at), id)
  if redis.call('ZRANGE', scheduled, 0, 0)[1] == id then
    redis.call('PUBLISH', channel, job_type)
  end
end

-- Ends a job as FAILED: into the type's failed index (the dead letters, kept
-- as long as the jobs themselves), and the retention countdown starts.
local function dead_letter(job, failed, id, now, err, retention)
  redis.call('HSET', job, 'status', FAILED, 'last_error', err, 'finished_at', int(now), 'updated_at', int(now))
  redis.call('ZADD', failed, int(now), id)
  redis.call('ZREMRANGEBYSCORE', failed, '-inf', int(now - tonumber(retention)))
  redis.call('PEXPIRE', job, retention)
end

-- Starts a new attempt of a job its worker popped (claim.lua; complete.lua claims
-- the ids its caller took in the call before). It takes the id out of `popped`
-- and, if the job is still PENDING and due, starts a new attempt with a new
-- fencing token and records it in the worker's `held` set. An id the reaper
-- already moved back is 'gone'; a cancelled, finished, expired or not-yet-due job
-- is skipped, so a stale id never blocks the queue. A job enqueued without
-- max_attempts gets the worker's default here.
-- `w`: {popped, suspects, leases, held, worker_id, started, lease_until,
-- default_attempts}. Returns {'ok', the values of `fields` (false where not set)}
-- | {'gone'} | {'missing'} | {'skip', status} | {'early'}.
local function claim_popped(w, job, id, fields)
  if redis.call('LREM', w.popped, 1, id) == 0 then
    return {'gone'}
  end
  redis.call('HDEL', w.suspects, id)
  local state = redis.call('HMGET', job, 'status', 'execution_time_ms', 'max_attempts', 'attempt',
    'lease_token')
  if not state[1] then
    return {'missing'}
  end
  if state[1] ~= PENDING then
    return {'skip', state[1]}
  end
  if tonumber(state[2] or 0) > tonumber(w.started) then
    return {'early'}  -- a stale copy of a job that waits in the schedule (a retry)
  end
  -- One write for the whole change. A counter that is not a number counts as 0:
  -- the job runs rather than failing the script, and with it the whole batch.
  redis.call('HSET', job, 'status', RUNNING, 'started_at', w.started, 'updated_at', w.started,
    'worker_id', w.worker_id, 'max_attempts', state[3] or w.default_attempts,
    'attempt', int((tonumber(state[4]) or 0) + 1), 'lease_token', int((tonumber(state[5]) or 0) + 1))
  redis.call('ZADD', w.leases, w.lease_until, id)
  redis.call('SADD', w.held, id)
  local values = redis.call('HMGET', job, unpack(fields))
  table.insert(values, 1, 'ok')
  return values
end

-- The claim context of claim_popped for a worker, at the current time.
local function claimer(popped, suspects, leases, held, worker_id, lease_ms, default_attempts)
  local now = now_ms()
  return {popped = popped, suspects = suspects, leases = leases, held = held, worker_id = worker_id,
    started = int(now), lease_until = int(now + tonumber(lease_ms)), default_attempts = default_attempts}
end
