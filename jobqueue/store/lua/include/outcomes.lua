-- outcomes: the code that opens every per-job reply, {CODE, details...}.
-- jobqueue/store/outcomes.py mirrors this list (a test keeps the two equal) and
-- decodes the codes in one place.
local OK = 'ok'
local NOT_FOUND = 'not_found'          -- no such job (never stored, or expired)
local WRONG_STATE = 'wrong_state'      -- its status does not allow the change; the status follows
local STALE = 'stale'                  -- the caller's lease is not the current one; the status follows
local GONE = 'gone'                    -- the id was no longer in `popped`: swept back to `ready`
local NOT_DUE = 'not_due'              -- a stale copy of a job that waits in the schedule
local RETRYING = 'retrying'            -- the failed run will run again; the new execution time follows
local DEAD_LETTERED = 'dead_lettered'  -- the job ended FAILED, in the type's dead letters
local RECOVERED = 'recovered'          -- taken back from a dead or stalled holder: next in `ready`
local ALIVE = 'alive'                  -- the lease or worker is live again: nothing to take back
local MOVED = 'moved'                  -- the job is no longer that worker's
local NOT_RUNNING = 'not_running'      -- no running job behind the lease: the entry was dropped
local PAUSED = 'paused'                -- the type is paused: the id went back to `ready`, unclaimed
local FULL = 'full'                    -- the type holds its maximum of pending jobs: not enqueued
local TOO_LATE = 'too_late'            -- not started by its expiry: the job ended EXPIRED
local EXPIRES_EARLY = 'expires_early'  -- its expiry is not after now and its execution time: not enqueued
