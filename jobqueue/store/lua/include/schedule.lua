-- schedule: put a job into its type's schedule; when it is the earliest there,
-- wake the schedulers (they sleep until the earliest job they know of).
-- include: common
local function schedule(scheduled, id, at, channel, job_type)
  redis.call('ZADD', scheduled, int(at), id)
  if redis.call('ZRANGE', scheduled, 0, 0)[1] == id then
    redis.call('PUBLISH', channel, job_type)
  end
end
