-- take: move up to `limit` ready ids into `popped`, oldest first, without waiting.
-- A busy worker takes a batch with this and claims it in one more call; only an
-- idle one blocks (BLMOVE). Ids left in `popped` by a worker that dies before
-- its claim are returned by sweep_popped.
-- KEYS: ready, popped
-- ARGV: limit
-- Returns the ids taken (possibly none).
local ids = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
if not ids then
  return {}
end
redis.call('LPUSH', KEYS[2], unpack(ids))
return ids
