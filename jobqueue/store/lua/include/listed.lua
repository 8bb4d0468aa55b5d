-- listed: what a list reads of a job (store/codec.py LISTED_FIELDS and after).
-- A list names the fields it reads of every job, the last `markers` of them
-- fields that others go with (a backoff's base, a unique key, a progress token),
-- then those others: they are read only when one of the markers is set (most
-- jobs have none of them, and every field read costs a conversion each way).
-- Returns the values of every field, then, if read, the others' (all nil: the
-- job is gone).
local function listed_values(key, fields, markers, dependent)
  local values = redis.call('HMGET', key, unpack(fields))
  local always = #fields
  for i = always - markers + 1, always do
    if values[i] then
      local more = redis.call('HMGET', key, unpack(dependent))
      for j = 1, #dependent do
        values[always + j] = more[j]
      end
      return values
    end
  end
  return values
end
