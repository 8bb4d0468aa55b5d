-- claim_popped: start a new attempt of a job its worker popped (claim.lua, and
-- round.lua for the ids its caller took in the round before). It takes the id out
-- of `popped` and, if the job is still PENDING and due, starts a new attempt with
-- a new fencing token and records it in the worker's `held` set. An id the reaper
-- already swept back is GONE; a cancelled, finished, expired or not-yet-due job is
-- skipped, so a stale id never blocks the queue. A job enqueued without
-- max_attempts gets the worker's default here. While the type is paused, the id
-- goes back to `ready`, next in line, unclaimed.
-- `w`: what `claimer` returns. Returns {OK, the values of `fields` (false where
-- not set)} | {GONE} | {NOT_FOUND} | {WRONG_STATE, status} | {NOT_DUE} | {PAUSED}.
-- include: common, outcomes, changes
local function claim_popped(w, job, id, fields)
  if redis.call('LREM', w.popped, 1, id) == 0 then
    return {GONE}
  end
  redis.call('HDEL', w.suspects, id)
  if w.paused then
    redis.call('RPUSH', w.ready, id)
    return {PAUSED}
  end
  local state = redis.call('HMGET', job, 'status', 'execution_time_ms', 'max_attempts', 'attempt',
    'lease_token')
  if not state[1] then
    return {NOT_FOUND}
  end
  if state[1] ~= PENDING then
    return {WRONG_STATE, state[1]}
  end
  if tonumber(state[2] or 0) > tonumber(w.started) then
    return {NOT_DUE}  -- a stale copy of a job that waits in the schedule (a retry)
  end
  -- One write for the whole change. A counter that is not a number counts as 0:
  -- the job runs rather than failing the script, and with it the whole batch.
  local attempt = int((tonumber(state[4]) or 0) + 1)
  redis.call('HSET', job, 'status', RUNNING, 'started_at', w.started, 'updated_at', w.started,
    'worker_id', w.worker_id, 'max_attempts', state[3] or w.default_attempts,
    'attempt', attempt, 'lease_token', int((tonumber(state[5]) or 0) + 1))
  redis.call('ZADD', w.leases, w.lease_until, id)
  redis.call('SADD', w.held, id)
  local c = w.changes
  c.pending = c.pending - 1
  c.running = c.running + 1
  changed(c, id, RUNNING, attempt)
  local values = redis.call('HMGET', job, unpack(fields))
  table.insert(values, 1, OK)
  return values
end

-- The claim context of claim_popped for a worker, at the time of `c`, the call's
-- changes (which know whether the type is paused).
local function claimer(c, popped, suspects, leases, held, ready, worker_id, lease_ms, default_attempts)
  return {popped = popped, suspects = suspects, leases = leases, held = held, ready = ready,
    paused = c.paused, worker_id = worker_id, changes = c,
    started = int(c.now), lease_until = int(c.now + tonumber(lease_ms)),
    default_attempts = default_attempts}
end
