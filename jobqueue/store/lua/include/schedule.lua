-- schedule: put a job into its type's schedule; when it is the earliest there,
-- wake the schedulers (they sleep until the earliest job they know of).
-- `priority`: the job's (its score carries it to promote: include/priority.lua).
-- include: common, priority
local function schedule(scheduled, id, at, channel, job_type, priority)
  redis.call('ZADD', scheduled, scheduled_score(at, priority), id)
  if redis.call('ZRANGE', scheduled, 0, 0)[1] == id then
    redis.call('PUBLISH', channel, job_type)
  end
end
