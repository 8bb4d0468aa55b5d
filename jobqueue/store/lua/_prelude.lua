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
