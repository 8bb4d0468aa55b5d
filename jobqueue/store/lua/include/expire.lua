-- expire: end a PENDING job that no worker started by its `expires_at_ms` as
-- EXPIRED: into the type's expired index, and the retention countdown starts.
-- Used by a claim that finds it past its expiry (claim_popped) and by the
-- reaper's pass over `expiring` (expire.lua). `c`: the call's changes; `lock`: the
-- job's `unique_lock` (nil: none), released as by every final transition.
-- include: common, changes, unique
local EXPIRED_ERROR = 'expired before start'

-- Whether a job with these stored values may no longer start at `now`: it has an
-- expiry, it is past, and no run of the job has counted as an attempt yet (a
-- retry after a failed or crashed run is not expiry's business: the job did start
-- in time; a run handed back at shutdown does not count, as for attempts).
local function past_expiry(expires_at, attempt, now)
  return expires_at and (tonumber(attempt) or 0) == 0 and tonumber(expires_at) <= tonumber(now)
end

local function expire(c, job, live, expired, id, attempt, retention, lock)
  local now = int(c.now)
  redis.call('HSET', job, 'status', EXPIRED, 'last_error', EXPIRED_ERROR, 'finished_at', now,
    'updated_at', now)
  finished(c, live, expired, {id}, retention)
  redis.call('PEXPIRE', job, retention)
  release_unique(lock, id)
  c.pending = c.pending - 1
  c.expired = c.expired + 1
  changed(c, id, EXPIRED, attempt)
end
