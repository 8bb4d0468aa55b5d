-- changes: what one script call did to jobs, gathered as it goes and written once
-- at its end (`commit`): the type's counters and minute buckets in `stats`, and
-- one entry in the partition's events stream. `stats` is read once when the call
-- begins (its counters, and whether the type is paused) and written once when it
-- ends, however many jobs the call changed: a call to Redis from a script costs
-- more than the Lua around it.
-- include: common

-- The events stream keeps about this many entries (one per call) per partition.
local EVENTS_KEPT = 10000

local function changes(now, stats)
  local minute = math.floor(now / 60000)
  local slot = int(minute % 60)
  local stored = redis.call('HMGET', stats, 'pending', 'running', 'paused', 'm' .. slot, 'c' .. slot,
    'f' .. slot)
  return {now = now, stats = stats, jobs = {}, paused = stored[3] == '1',
    pending_was = tonumber(stored[1]) or 0, running_was = tonumber(stored[2]) or 0,
    minute = int(minute), slot = slot, bucket = stored[4], completed_was = tonumber(stored[5]) or 0,
    failed_was = tonumber(stored[6]) or 0,
    pending = 0, running = 0, enqueued = 0, completed = 0, failed = 0, retried = 0, cancelled = 0,
    expired = 0}
end

-- A job's status and attempt after the change, for its event.
local function changed(c, id, status, attempt)
  c.jobs[#c.jobs + 1] = id .. ':' .. status .. ':' .. (attempt or '0')
end

-- Whether this call is the first of a new minute for the type's finished jobs:
-- the time to trim its finished indexes (their ids past retention), once a minute.
local function new_minute(c)
  return c.bucket ~= c.minute
end

-- Jobs reached a final state: out of `live`, into the final state's index, which
-- keeps what is still retained (its jobs expire `retention` after they finish).
local function finished(c, live, index, ids, retention)
  if #ids == 0 then
    return
  end
  redis.call('ZREM', live, unpack(ids))
  local scored = {}
  local at = int(c.now)
  for i, id in ipairs(ids) do
    scored[2 * i - 1], scored[2 * i] = at, id
  end
  redis.call('ZADD', index, unpack(scored))
  if new_minute(c) then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. int(c.now - tonumber(retention)))
  end
end

local function add(stats, field, n)
  if n ~= 0 then
    redis.call('HINCRBY', stats, field, n)
  end
end

-- One entry of the events stream, capped: `jobs` and the pairs of `fields` whose
-- value is not ''.
local function add_entry(events, job_type, jobs, fields)
  local entry = {'XADD', events, 'MAXLEN', '~', EVENTS_KEPT, '*', 'type', job_type, 'jobs', jobs}
  for i = 1, #fields, 2 do
    if fields[i + 1] ~= '' then
      entry[#entry + 1], entry[#entry + 2] = fields[i], fields[i + 1]
    end
  end
  redis.call(unpack(entry))
end

-- Writes what the call did. `worker` and `err`: '' when the changes have none.
-- A minute bucket's slot is reused an hour later: what it counted then moves
-- into `total_completed` and `total_failed` first, so a total is always those
-- fields plus every slot's count.
local function commit(c, events, job_type, worker, err)
  local stats = c.stats
  local set = {}
  if c.pending ~= 0 then
    set[#set + 1], set[#set + 2] = 'pending', int(c.pending_was + c.pending)
  end
  if c.running ~= 0 then
    set[#set + 1], set[#set + 2] = 'running', int(c.running_was + c.running)
  end
  if c.completed > 0 or c.failed > 0 then
    if new_minute(c) then
      add(stats, 'total_completed', c.completed_was)
      add(stats, 'total_failed', c.failed_was)
      c.completed_was, c.failed_was = 0, 0
      set[#set + 1], set[#set + 2] = 'm' .. c.slot, c.minute
    end
    set[#set + 1], set[#set + 2] = 'c' .. c.slot, int(c.completed_was + c.completed)
    set[#set + 1], set[#set + 2] = 'f' .. c.slot, int(c.failed_was + c.failed)
  end
  if #set > 0 then
    redis.call('HSET', stats, unpack(set))
  end
  add(stats, 'total_enqueued', c.enqueued)
  add(stats, 'total_retried', c.retried)
  add(stats, 'total_cancelled', c.cancelled)
  add(stats, 'total_expired', c.expired)
  if #c.jobs > 0 then
    add_entry(events, job_type, table.concat(c.jobs, ' '), {'worker', worker, 'error', err})
  end
end

-- A running job's progress report as its own entry (progress.lua): the job as
-- RUNNING, plus `progress` and `progress_message`, which mark it as a report
-- (store/job_events.py). Capped like every entry: reports take their place in
-- the stream's EVENTS_KEPT.
local function progress_event(events, job_type, id, attempt, worker, progress, message)
  add_entry(events, job_type, id .. ':' .. RUNNING .. ':' .. attempt,
    {'worker', worker, 'progress', progress, 'progress_message', message})
end
