-- enqueue: store new PENDING jobs of one type and queue them, a batch per call.
-- A job due now goes straight to the ready list; a later one into the schedule.
-- When a job becomes the type's earliest scheduled one, schedulers are told
-- (once per call) so they can shorten their sleep. With an idempotency key, the
-- first job enqueued with it (within the window) is returned instead of a new
-- one, atomically, however many duplicates arrive at once. A retried call
-- (same ids) creates nothing new. With a maximum depth, a job that would make the
-- type's pending jobs exceed it is refused (FULL), not stored. With a unique key
-- (include/unique.lua) held by an active job: mode WHILE_ACTIVE returns that job;
-- DEBOUNCE, if it is PENDING, replaces its payload and moves its execution time
-- (else a new job takes the key). Duplicates in one call see each other. A job
-- with an expiry (option `expires_at_ms`, or `expires_in_ms` from now) stores it
-- as `expires_at_ms` and goes into `expiring`; one not after now and its
-- execution time is refused (EXPIRES_EARLY), not stored.
-- include: common, outcomes, changes, unique, priority
-- KEYS: scheduled, ready, live, stats, events, prio, expiring, ...the jobs, ...the idempotency and unique keys in use
-- ARGV: type, channel, window_ms, N, max_depth (0: none), then per job: "at,stale,k,n" (at: execution
--       time, '' = now; stale: an id an idempotency key may point at and count
--       as absent, because that job expired; k: the KEYS index of its
--       idempotency key, 0 for none; n: extra fields: the options set, and
--       trace_context with tracing on; `priority` among them puts the job in
--       line by it: include/priority.lua), and with a unique key ",u,m" (u: its KEYS
--       index; m: 'a' for WHILE_ACTIVE, or the debounce delay in ms), payload, then n field,
--       value pairs. (Few, packed arguments: encoding them is most of the
--       client's cost of a big batch.)
-- Returns {created_at, then per job: its execution_time_ms (an integer) if it was
-- created, else the id of the existing job (a string; '~' and the id: a PENDING job
-- debounced), or FULL, or EXPIRES_EARLY}: flat, since building and
-- parsing a nested reply per job costs more than the job's HSET.
-- A job's expiry from its option pairs ARGV[first..last] (absolute, or relative
-- to `now`), and the index of its option; nil without one.
local function expiry_option(first, last, now)
  for i = first, last, 2 do
    if ARGV[i] == 'expires_at_ms' then
      return tonumber(ARGV[i + 1]), i
    elseif ARGV[i] == 'expires_in_ms' then
      return now + tonumber(ARGV[i + 1]), i
    end
  end
  return nil, nil
end

local job_type, channel, window_ms, count, max_depth =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])

local now = now_ms()
local now_text = int(now)
local c = changes(now, stats)
local room = math.huge
if max_depth > 0 then
  room = max_depth - c.pending_was
end
local live_scored = {}
local results = {now}
local earliest = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')[2]
earliest = earliest and tonumber(earliest)
local wake = false
local due = {}
local expiring_scored = {}
local l = lines(ready, prio)
local job_prefix = nil  -- 'P:{pppp}:job:', named from the first job's key when a unique key needs it
local a = 6

-- A PENDING job's new payload and execution time (a debounce). Still scheduled: it
-- moves in the schedule. Already due (in `ready` or `popped`) and now due later:
-- it goes into the schedule, and its copy left behind is skipped by the claim (not
-- due), as cancel leaves one.
local function debounce(holder_key, holder, lock, new_payload, execution_time)
  redis.call('HSET', holder_key, 'payload', new_payload, 'execution_time_ms', int(execution_time),
    'updated_at', now_text)
  hold_unique(lock, holder, execution_time, now)
  local scheduled_at = redis.call('ZSCORE', scheduled, holder)
  local priority = priority_of(redis.call('HGET', holder_key, 'priority'))
  if execution_time > now then
    redis.call('ZADD', scheduled, scheduled_score(execution_time, priority), holder)
    if not earliest or execution_time < earliest then
      earliest, wake = execution_time, true
    end
  elseif scheduled_at then
    redis.call('ZREM', scheduled, holder)
    if priority == DEFAULT_PRIORITY then
      due[#due + 1] = holder
    else
      line_up(l, holder, priority, false)
    end
  end
end
for k = FIXED_KEYS + 1, FIXED_KEYS + count do
  local job = KEYS[k]
  local id = string.sub(job, -36)
  local at, stale, key_index, n, unique_index, mode = '', '', 0, 0, '', ''
  if ARGV[a] ~= ',,0,0' then  -- the common job: no time, no key, no options; skips the match
    at, stale, key_index, n, unique_index, mode =
      string.match(ARGV[a], '^([^,]*),([^,]*),(%d+),(%d+),?(%d*),?(%w*)$')
  end
  local payload = ARGV[a + 1]
  local options = a + 2
  a = options + 2 * tonumber(n)
  local idempotency = KEYS[tonumber(key_index)]
  local existing = idempotency and redis.call('GET', idempotency)
  local lock = unique_index ~= '' and KEYS[tonumber(unique_index)] or nil
  local holder, holder_status = nil, nil
  if lock and not (existing and existing ~= stale) then
    holder = redis.call('GET', lock)
    if holder then
      job_prefix = job_prefix or string.sub(job, 1, -37)
      holder_status = redis.call('HGET', job_prefix .. holder, 'status')
    end
  end
  local execution_time = tonumber(at) or now + (tonumber(mode) or 0)
  local expires, expires_arg = nil, nil
  if tonumber(n) ~= 0 then
    expires, expires_arg = expiry_option(options, a - 1, now)
  end
  if existing and existing ~= stale then
    results[#results + 1] = existing
  elseif redis.call('EXISTS', job) == 1 then
    results[#results + 1] = id
  elseif mode == 'a' and (holder_status == PENDING or holder_status == RUNNING) then
    results[#results + 1] = holder
  elseif lock and mode ~= 'a' and holder_status == PENDING then
    debounce(job_prefix .. holder, holder, lock, payload, tonumber(at) or now + tonumber(mode))
    results[#results + 1] = '~' .. holder
  elseif c.enqueued >= room then
    results[#results + 1] = FULL
  elseif expires and (expires <= now or expires <= execution_time) then
    results[#results + 1] = EXPIRES_EARLY
  else
    redis.call('HSET', job,
      'id', id, 'type', job_type, 'payload', payload, 'status', PENDING,
      'execution_time_ms', int(execution_time), 'created_at', now_text, 'updated_at', now_text,
      'attempt', 0, 'lease_token', 0)
    local priority = DEFAULT_PRIORITY
    for i = options, a - 1, 2 do
      if i == expires_arg then
        redis.call('HSET', job, 'expires_at_ms', int(expires))
        expiring_scored[#expiring_scored + 1] = int(expires)
        expiring_scored[#expiring_scored + 1] = id
      else
        redis.call('HSET', job, ARGV[i], ARGV[i + 1])
      end
      if ARGV[i] == 'priority' then
        priority = tonumber(ARGV[i + 1])
      end
    end
    if idempotency then
      redis.call('SET', idempotency, id, 'PX', window_ms)
    end
    if lock then
      redis.call('HSET', job, 'unique_lock', lock)
      hold_unique(lock, id, execution_time, now)
    end
    if execution_time > now then
      redis.call('ZADD', scheduled, scheduled_score(execution_time, priority), id)
      if not earliest or execution_time < earliest then
        earliest, wake = execution_time, true
      end
    elseif priority == DEFAULT_PRIORITY then
      due[#due + 1] = id
    else
      line_up(l, id, priority, false)
    end
    results[#results + 1] = execution_time
    c.enqueued = c.enqueued + 1
    live_scored[#live_scored + 1] = now_text
    live_scored[#live_scored + 1] = id
    changed(c, id, PENDING, '0')
  end
end
if #live_scored > 0 then
  redis.call('ZADD', live, unpack(live_scored))
end
if #expiring_scored > 0 then
  redis.call('ZADD', expiring, unpack(expiring_scored))
end
c.pending = c.enqueued
commit(c, events, job_type, '', '')
if #due > 0 then
  redis.call('LPUSH', ready, unpack(due))
end
wake_idle(l)
if wake then
  redis.call('PUBLISH', channel, job_type)
end
return results
