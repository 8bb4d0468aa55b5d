-- dead_letter: end a job as FAILED: into the type's failed index (the dead
-- letters, kept as long as the jobs themselves), and the retention countdown starts.
-- `attempt`: the attempt whose run `err` describes.
-- include: common
local function dead_letter(job, failed, id, now, err, attempt, retention)
  redis.call('HSET', job, 'status', FAILED, 'last_error', err, 'last_error_attempt', attempt,
    'finished_at', int(now), 'updated_at', int(now))
  redis.call('ZADD', failed, int(now), id)
  redis.call('ZREMRANGEBYSCORE', failed, '-inf', int(now - tonumber(retention)))
  redis.call('PEXPIRE', job, retention)
end
