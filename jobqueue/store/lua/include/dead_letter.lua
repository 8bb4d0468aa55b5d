-- dead_letter: end a RUNNING job as FAILED: into the type's failed index (the dead
-- letters, kept as long as the jobs themselves), and the retention countdown starts.
-- `attempt`: the attempt whose run `err` describes; `c`: the call's changes.
-- include: common, changes
local function dead_letter(c, job, live, failed, id, err, attempt, retention)
  redis.call('HSET', job, 'status', FAILED, 'last_error', err, 'last_error_attempt', attempt,
    'finished_at', int(c.now), 'updated_at', int(c.now))
  finished(c, live, failed, {id}, retention)
  redis.call('PEXPIRE', job, retention)
  c.running = c.running - 1
  c.failed = c.failed + 1
  changed(c, id, FAILED, attempt)
end
