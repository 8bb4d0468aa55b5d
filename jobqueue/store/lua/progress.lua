-- progress: a running job's progress, written by the holder of its lease only.
-- Sets progress (a fraction 0..1), progress_message, progress_at (now) and
-- progress_token (the run's lease_token: a read shows the progress only while
-- it is the job's, so a run that starts hides its predecessor's without a write)
-- in the job's hash while the job is RUNNING under the caller's lease_token: a
-- stale holder (the job was taken back, cancelled, released or finished) writes
-- nothing. No status changes, so no counters or index; the report is one entry
-- in the partition's events stream (include/changes.lua, `progress_event`) for
-- the watches that ask for progress.
-- include: common, outcomes, changes
-- KEYS: job, events
-- ARGV: lease_token, progress, message, the job's id
-- Returns {OK} | {STALE, the job's status or ''}.
local token, progress, message, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local state = redis.call('HMGET', job, 'status', 'lease_token', 'type', 'attempt', 'worker_id')
if state[1] ~= RUNNING or state[2] ~= token then
  return {STALE, state[1] or ''}
end
redis.call('HSET', job, 'progress', progress, 'progress_message', message, 'progress_at', int(now_ms()),
  'progress_token', token)
progress_event(events, state[3], id, state[4] or '0', state[5] or '', progress, message)
return {OK}
