-- give_back: return ids a worker took into `popped` for its next round and will
-- not claim after all (its slots stayed busy, or it is stopping), to the front
-- of the line they were taken from (`ready`, or `prio` by their priority:
-- include/priority.lua), in their order: they are the next taken.
-- An id no longer in `popped` (swept back already) is left alone.
-- include: priority
-- KEYS: popped, ready, prio, ...the jobs
-- ARGV: id 1, ..., id N, oldest first (the job keys in the same order)
-- Returns the number of ids given back.
local given = 0
local l = lines(ready, prio)
for i = #ARGV, 1, -1 do
  if redis.call('LREM', popped, 1, ARGV[i]) == 1 then
    line_up(l, ARGV[i], priority_of(redis.call('HGET', KEYS[FIXED_KEYS + i], 'priority')), true)
    given = given + 1
  end
end
wake_idle(l)
return given
