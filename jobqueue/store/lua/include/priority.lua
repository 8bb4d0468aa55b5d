-- priority: where a PENDING, due job waits, by its priority (1 to 9, 5 when not
-- set; a higher one is taken first). Default-priority ids wait in `ready`, the
-- list they always used (the fast path: a drain of one priority works as it did).
-- The other levels wait in `prio`, a sorted set whose order is the order they are
-- taken in: level p owns the band of scores around (9 - p) * BAND, so higher
-- levels come first; within a band, FIFO: a job joins at the band's highest score
-- + 1, a redelivered one (next in line) at its lowest - 1.
-- Idle workers block on `ready` alone (BLMOVE: a pop no crash can lose), so a call
-- that puts ids in `prio` also pushes the type's marker into `ready`: at its front
-- for a level above the default (the next pop takes it), at its back for one
-- below (reached once the default level is empty). A worker that pops the marker
-- takes in priority order (`take`), and drops the markers it meets. The marker
-- is an id no job has (a UUID of version 0).
-- A scheduled job's priority rides in its `scheduled` score, as p/16 added to its
-- time (promote cannot read the jobs: their keys are known only there).
-- include: common

local DEFAULT_PRIORITY = 5
local BAND, HALF_BAND = 2 ^ 48, 2 ^ 47
-- Scores below this are levels above the default.
local ABOVE_DEFAULT = (9 - DEFAULT_PRIORITY) * BAND - HALF_BAND

-- The type's marker, from any of its keys (the hash tag is its partition).
local function marker_of(key)
  return string.match(key, '{(%x%x%x%x)}') .. '0000-0000-0000-0000-000000000000'
end

-- A job's priority from its hash's `priority` field (nil or false: the default).
local function priority_of(value)
  return tonumber(value) or DEFAULT_PRIORITY
end

-- A `scheduled` score: the time, and a priority other than the default as p/16.
local function scheduled_score(at, priority)
  if priority == DEFAULT_PRIORITY then
    return int(at)
  end
  return int(at) .. string.format('.%04d', priority * 625)
end

-- The priority a `scheduled` score carries.
local function scheduled_priority(score)
  local fraction = tonumber(score) % 1
  if fraction == 0 then
    return DEFAULT_PRIORITY
  end
  return math.floor(fraction * 16 + 0.5)
end

-- What one call puts in line: `line_up` each id, then `wake` once.
local function lines(ready, prio)
  return {ready = ready, prio = prio, backs = {}, above = false, below = false}
end

-- The score of the front (or back) of level p's band; its middle when it is empty.
local function band_edge(prio, p, front)
  local middle = (9 - p) * BAND
  local low, high = int(middle - HALF_BAND), '(' .. int(middle + HALF_BAND)
  local edge
  if front then
    edge = redis.call('ZRANGE', prio, low, high, 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')[2]
  else
    edge = redis.call('ZRANGE', prio, high, low, 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')[2]
  end
  return edge and tonumber(edge) or middle
end

-- Puts `id` in line at priority p: at the back of its level, or, `front`, next in it.
local function line_up(l, id, p, front)
  if p == DEFAULT_PRIORITY then
    redis.call(front and 'RPUSH' or 'LPUSH', l.ready, id)
    return
  end
  local score
  if front then
    score = band_edge(l.prio, p, true) - 1
  else
    score = (l.backs[p] or band_edge(l.prio, p, false)) + 1
    l.backs[p] = score
  end
  redis.call('ZADD', l.prio, int(score), id)
  if p > DEFAULT_PRIORITY then
    l.above = true
  else
    l.below = true
  end
end

-- One marker for what the call put in `prio`, so that an idle worker wakes.
local function wake_idle(l)
  if l.above then
    redis.call('RPUSH', l.ready, marker_of(l.ready))
  elseif l.below then
    redis.call('LPUSH', l.ready, marker_of(l.ready))
  end
end

-- Takes up to `limit` ready ids in the order they run: levels above the default
-- (`prio`), the default (`ready`), then the levels below it once `ready` is
-- empty. The markers met are dropped (and count for nothing); if one was and
-- `prio` still holds ids, one goes back, where it belongs: a take never adds
-- markers. Returns the ids.
local function take(ready, prio, limit)
  local top = redis.call('ZRANGE', prio, 0, limit - 1, 'WITHSCORES')
  local taken, ranked = {}, {}
  local i = 1
  while i < #top and tonumber(top[i + 1]) < ABOVE_DEFAULT do
    taken[#taken + 1] = top[i]
    ranked[#ranked + 1] = top[i]
    i = i + 2
  end
  local dropped, marker = false, nil
  -- A marker takes no place in the batch: pop again after one (each turn drops one at least).
  while #taken < limit do
    local want = limit - #taken
    local ids = redis.call('RPOP', ready, want) or {}
    for _, id in ipairs(ids) do
      marker = marker or marker_of(ready)
      if id == marker then
        dropped = true
      else
        taken[#taken + 1] = id
      end
    end
    if #ids < want then  -- the default level is empty: the levels below it
      while i < #top and #taken < limit do
        taken[#taken + 1] = top[i]
        ranked[#ranked + 1] = top[i]
        i = i + 2
      end
      break
    end
  end
  if #ranked > 0 then
    redis.call('ZREM', prio, unpack(ranked))
  end
  if dropped then
    local next_score = redis.call('ZRANGE', prio, 0, 0, 'WITHSCORES')[2]
    if next_score then
      local l = lines(ready, prio)
      l.above = tonumber(next_score) < ABOVE_DEFAULT
      l.below = true
      wake_idle(l)
    end
  end
  return taken
end
