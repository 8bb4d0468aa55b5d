-- give_back: return ids a worker took into `popped` for its next round and will
-- not claim after all (its slots stayed busy, or it is stopping), to the end of
-- the ready list they were taken from, in their order: they are the next taken.
-- An id no longer in `popped` (swept back already) is left alone.
-- KEYS: popped, ready
-- ARGV: id 1, ..., id N, oldest first
-- Returns the number of ids given back.
local given = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', popped, 1, ARGV[i]) == 1 then
    redis.call('RPUSH', ready, ARGV[i])
    given = given + 1
  end
end
return given
