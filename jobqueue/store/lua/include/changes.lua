-- changes: what one script call did to jobs, gathered as it goes and written once
-- at its end (`commit`): the type's counters in `stats`, the minute buckets, and
-- one entry in the partition's events stream. One write per counter and one event
-- per call, however many jobs the call changed.
-- include: common

-- The events stream keeps about this many entries (one per call) per partition.
local EVENTS_KEPT = 10000

local function changes(now)
  return {now = now, jobs = {}, pending = 0, running = 0, enqueued = 0, completed = 0, failed = 0,
    retried = 0, cancelled = 0}
end

-- A job's status and attempt after the change, for its event.
local function changed(c, id, status, attempt)
  c.jobs[#c.jobs + 1] = id .. ':' .. status .. ':' .. (attempt or '0')
end

local function add(stats, field, n)
  if n ~= 0 then
    redis.call('HINCRBY', stats, field, n)
  end
end

-- A job reached a final state: out of `live`, into the final state's index, which
-- keeps what is still retained (its jobs expire `retention` after they finish).
local function finished(live, index, ids, now, retention)
  if #ids == 0 then
    return
  end
  redis.call('ZREM', live, unpack(ids))
  local scored = {}
  local at = int(now)
  for i, id in ipairs(ids) do
    scored[2 * i - 1], scored[2 * i] = at, id
  end
  redis.call('ZADD', index, unpack(scored))
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. int(now - tonumber(retention)))
end

-- Writes what the call did. `worker` and `err`: '' when the changes have none.
local function commit(c, stats, events, job_type, worker, err)
  add(stats, 'pending', c.pending)
  add(stats, 'running', c.running)
  add(stats, 'total_enqueued', c.enqueued)
  add(stats, 'total_retried', c.retried)
  add(stats, 'total_cancelled', c.cancelled)
  if c.completed > 0 or c.failed > 0 then
    add(stats, 'total_completed', c.completed)
    add(stats, 'total_failed', c.failed)
    local minute = math.floor(c.now / 60000)
    local slot = int(minute % 60)
    if redis.call('HGET', stats, 'm' .. slot) ~= int(minute) then
      redis.call('HSET', stats, 'm' .. slot, int(minute), 'c' .. slot, 0, 'f' .. slot, 0)
    end
    add(stats, 'c' .. slot, c.completed)
    add(stats, 'f' .. slot, c.failed)
  end
  if #c.jobs > 0 then
    local entry = {'XADD', events, 'MAXLEN', '~', EVENTS_KEPT, '*', 'type', job_type,
      'jobs', table.concat(c.jobs, ' ')}
    if worker ~= '' then
      entry[#entry + 1], entry[#entry + 2] = 'worker', worker
    end
    if err ~= '' then
      entry[#entry + 1], entry[#entry + 2] = 'error', err
    end
    redis.call(unpack(entry))
  end
end
