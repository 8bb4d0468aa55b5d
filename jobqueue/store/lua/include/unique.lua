-- unique: a job's unique key (mode WHILE_ACTIVE or DEBOUNCE) names the job that
-- holds it; every transition that makes a job final releases it here. `lock`: the
-- job's `unique_lock` field (the key's name; nil: the job has none), read with the
-- fields the script reads anyway, so a job without one costs no command. The key
-- is not declared: it is named from the job's own field, and carries the job's
-- hash tag, so it is on the script's slot. It is deleted only while it still names
-- this job: a debounce may have handed it to a newer job.
-- include: common
local function release_unique(lock, id)
  if lock and redis.call('GET', lock) == id then
    redis.call('DEL', lock)
  end
end

-- The key stays beside the release as a safety net: it expires UNIQUE_KEPT_MS after
-- its job's execution time, so a key whose release was missed cannot stay forever
-- (a job still active by then no longer holds it).
local UNIQUE_KEPT_MS = 7 * 24 * 3600 * 1000

local function hold_unique(lock, id, execution_time, now)
  redis.call('SET', lock, id, 'PX', int(math.max(execution_time, now) - now + UNIQUE_KEPT_MS))
end
