-- page: up to `count` members of a time-scored index after a cursor, within a
-- score range, in (score, member) order (a read, no transition: ListJobs and the
-- bulk calls page through `live` and the finished indexes with it).
-- Many members share a score (an enqueue batch has one created_at), so the
-- cursor is a position in that order, (score, member), not a member: it still
-- holds when its member has left the index (or come back with another score),
-- and no member is skipped or repeated while the index does not change. Cost:
-- O(log N) per rank lookup, the bisection within the cursor's score (only when
-- its member left) O(log N * log ties), then O(log N + count).
-- Given a job key prefix, it also reads the fields of the first members' jobs
-- (HMGET), so that a page of one type is one round trip (ListJobs), and a page
-- of several types most often too. Those job hashes are
-- read by keys built from the ids (they cannot be declared: the ids are known
-- only here); they carry the index's hash tag, so they are on this script's slot.
-- include: common, listed
-- KEYS: ...the index (a sorted set scored by Unix ms)
-- ARGV: from (inclusive, '' none), to (exclusive, '' none), retention_ms ('': keep
--   all; else scores older than now - retention, jobs expired already, are left
--   out), after_score ('' from the start), after_member, newest_first (1 or 0), count,
--   then optionally the job key prefix ("P:{pppp}:job:"), of how many members (the
--   first in the order asked) the jobs are read, how many fields are read of every
--   job, how many of those are markers (include/listed), the field names
-- Returns, packed by cmsgpack (one bulk string: the reply's conversion out of Lua and
-- the client's parse cost far less than for nested tables), {more (1 or 0), member,
-- score, member, score...} in the order asked, or with a job key prefix {more,
-- member, score, {the job's values} or false where not read, ...} (a value false:
-- the field is not set; all false: the job is gone), the scores as integers; more:
-- members in the range are left after these.
local index = KEYS[FIXED_KEYS + 1]
local from, to, retention = ARGV[1], ARGV[2], ARGV[3]
local after_score, after_member = ARGV[4], ARGV[5]
local newest_first, count = ARGV[6] == '1', tonumber(ARGV[7])
local job_prefix = ARGV[8] or ''
local jobs, fields, markers, dependent
if job_prefix ~= '' then
  jobs = tonumber(ARGV[9])
  local always = tonumber(ARGV[10])
  markers = tonumber(ARGV[11])
  fields, dependent = {unpack(ARGV, 12, 11 + always)}, {unpack(ARGV, 12 + always)}
end

-- Whether a sorts after b byte by byte, as Redis orders members (Lua's own
-- comparison of strings follows the server's locale).
local function sorts_after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return #a > #b
end

-- How many members come before (score, member), or up to it (`through`): the
-- member's rank while it is there with that score (the usual case); else (it is
-- not among them: before and through are the same) those of a lower score, then
-- those of that score that sort before it, found by bisection of their ranks.
local function position(score, member, through)
  local now_at = redis.call('ZSCORE', index, member)
  if now_at and tonumber(now_at) == tonumber(score) then
    local rank = redis.call('ZRANK', index, member)
    return through and rank + 1 or rank
  end
  local lo = redis.call('ZCOUNT', index, '-inf', '(' .. score)
  local hi = redis.call('ZCOUNT', index, '-inf', score)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local at = redis.call('ZRANGE', index, mid, mid)[1]
    if sorts_after(member, at) then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo
end

if retention ~= '' then
  local oldest = now_ms() - tonumber(retention)
  if from == '' or tonumber(from) < oldest then
    from = int(oldest)
  end
end
local first = from == '' and 0 or redis.call('ZCOUNT', index, '-inf', '(' .. from)
local last = (to == '' and redis.call('ZCARD', index) or redis.call('ZCOUNT', index, '-inf', '(' .. to)) - 1

local low, high, more
if newest_first then
  high = last
  if after_score ~= '' then
    high = math.min(high, position(after_score, after_member, false) - 1)
  end
  low = math.max(first, high - count + 1)
  more = low > first
else
  low = first
  if after_score ~= '' then
    low = math.max(low, position(after_score, after_member, true))
  end
  high = math.min(last, low + count - 1)
  more = high < last
end
if high < low then
  return cmsgpack.pack({0})
end
local found = redis.call('ZRANGE', index, low, high, 'WITHSCORES')
local reply = {more and 1 or 0}
local first_entry, last_entry, step = 1, #found - 1, 2
if newest_first then
  first_entry, last_entry, step = #found - 1, 1, -2
end
for i = first_entry, last_entry, step do
  reply[#reply + 1] = found[i]
  reply[#reply + 1] = tonumber(found[i + 1])
  if job_prefix ~= '' then
    if jobs > 0 then
      jobs = jobs - 1
      reply[#reply + 1] = listed_values(job_prefix .. found[i], fields, markers, dependent)
    else
      reply[#reply + 1] = false
    end
  end
end
return cmsgpack.pack(reply)
