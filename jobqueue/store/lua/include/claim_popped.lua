-- claim_popped: start a new attempt of a job its worker popped (claim.lua, and
-- round.lua for the ids its caller took in the round before). It takes the id out
-- of `popped` and, if the job is still PENDING and due, starts a new attempt with
-- a new fencing token and records it in the worker's `held` set. An id the reaper
-- already swept back is GONE; a cancelled, finished, expired or not-yet-due job is
-- skipped, so a stale id never blocks the queue. A job enqueued without
-- max_attempts gets the worker's default here. While the type is paused, the id
-- goes back in line (`ready`, or `prio` by its priority), next, unclaimed. A job
-- past its `expires_at_ms` and at attempt 0 is not started: it ends EXPIRED
-- (include/expire.lua).
-- `w`: what `claimer` returns; `claimed(w)` writes the batch's leases and held ids
-- once the batch is claimed. Returns {OK, the job's values of the claimer's
-- `fields`, as they are after the claim (false where not set)} | {GONE} |
-- {NOT_FOUND} | {WRONG_STATE, status} | {NOT_DUE} | {PAUSED} | {TOO_LATE}.
-- include: common, outcomes, changes, priority, expire
local function claim_popped(w, job, id)
  if redis.call('LREM', w.popped, 1, id) == 0 then
    return {GONE}
  end
  if w.suspects_kept then
    redis.call('HDEL', w.suspects, id)
  end
  if w.paused then
    local l = lines(w.ready, w.prio)
    line_up(l, id, priority_of(redis.call('HGET', job, 'priority')), true)
    wake_idle(l)
    return {PAUSED}
  end
  -- One read for the checks and the reply: the caller's fields include the ones
  -- the claim checks and changes.
  local values = redis.call('HMGET', job, unpack(w.fields))
  local at = w.at
  local status = values[at.status]
  if not status then
    return {NOT_FOUND}
  end
  if status ~= PENDING then
    return {WRONG_STATE, status}
  end
  if tonumber(values[at.execution_time_ms] or 0) > tonumber(w.started) then
    return {NOT_DUE}  -- a stale copy of a job that waits in the schedule (a retry)
  end
  if past_expiry(values[at.expires_at_ms], values[at.attempt], w.started) then
    -- The unique lock is read here only: a claim's fields leave it out (the hot path).
    local lock = redis.call('HGET', job, 'unique_lock')
    expire(w.changes, job, w.live, w.expired, id, values[at.attempt], w.retention, lock or nil)
    return {TOO_LATE}
  end
  -- One write for the whole change. A counter that is not a number counts as 0:
  -- the job runs rather than failing the script, and with it the whole batch.
  local attempt = int((tonumber(values[at.attempt]) or 0) + 1)
  local token = int((tonumber(values[at.lease_token]) or 0) + 1)
  local max_attempts = values[at.max_attempts] or w.default_attempts
  redis.call('HSET', job, 'status', RUNNING, 'started_at', w.started, 'updated_at', w.started,
    'worker_id', w.worker_id, 'max_attempts', max_attempts, 'attempt', attempt, 'lease_token', token)
  values[at.status], values[at.started_at], values[at.updated_at] = RUNNING, w.started, w.started
  values[at.worker_id], values[at.max_attempts] = w.worker_id, max_attempts
  values[at.attempt], values[at.lease_token] = attempt, token
  local leased = w.leased
  leased[#leased + 1] = w.lease_until
  leased[#leased + 1] = id
  w.held_ids[#w.held_ids + 1] = id
  local c = w.changes
  c.pending = c.pending - 1
  c.running = c.running + 1
  changed(c, id, RUNNING, attempt)
  table.insert(values, 1, OK)
  return values
end

-- The claim context of claim_popped for a worker, at the time of `c`, the call's
-- changes (which know whether the type is paused). `fields`: the job hash fields a
-- claim returns; they must include those a claim reads or writes (`at`). `prio`:
-- the type's other priority levels (include/priority.lua). `live`, `expired`,
-- `retention`: where a job past its expiry goes.
local function claimer(c, popped, suspects, leases, held, ready, worker_id, lease_ms, default_attempts,
    fields, prio, live, expired, retention)
  local at = {}
  for i, name in ipairs(fields) do
    at[name] = i
  end
  return {popped = popped, suspects = suspects, leases = leases, held = held, ready = ready,
    paused = c.paused, worker_id = worker_id, changes = c, fields = fields, at = at,
    suspects_kept = redis.call('EXISTS', suspects) == 1, leased = {}, held_ids = {},
    started = int(c.now), lease_until = int(c.now + tonumber(lease_ms)),
    default_attempts = default_attempts, prio = prio, live = live, expired = expired,
    retention = retention}
end

-- The leases and held ids of the jobs claim_popped claimed, in one write each.
local function claimed(w)
  if #w.held_ids > 0 then
    redis.call('ZADD', w.leases, unpack(w.leased))
    redis.call('SADD', w.held, unpack(w.held_ids))
  end
end
