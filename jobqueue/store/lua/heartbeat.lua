-- heartbeat: extend the leases a worker still holds, all in one call.
-- A lease is still held while the job is RUNNING with the worker's token; the
-- lease entry is (re)written, so a running job can never be left without one.
-- KEYS: leases, job 1, ..., job N
-- ARGV: lease_ms, id 1, token 1, ..., id N, token N
-- Returns {id, status, ...} for each lease the worker lost (the job was
-- cancelled, or its lease expired and it was re-queued): those handlers must stop.
local leases = KEYS[1]
local lease_until = int(now_ms() + tonumber(ARGV[1]))
local lost = {}
for i = 2, #KEYS do
  local id, token = ARGV[2 * i - 2], ARGV[2 * i - 1]
  local held = redis.call('HMGET', KEYS[i], 'status', 'lease_token')
  if held[1] == RUNNING and held[2] == token then
    redis.call('ZADD', leases, lease_until, id)
  else
    lost[#lost + 1] = id
    lost[#lost + 1] = held[1] or ''
  end
end
return lost
