"""The Lua scripts behind RedisJobs: each state change of a job is one script, so it is
atomic across every replica without a lock (Redis runs one script at a time).

Every script touches only one job's keys, which share the hash tag `{<job id>}`:
    KEYS[1] imgcdn:job:{id}        HASH  owner kind status count done failed cancelled
                                         running created_at finished_at base_url webhook_*
    KEYS[2] imgcdn:job:{id}:items  HASH  "<i>" status, "<i>:n" attempts, "<i>:o" outcome JSON
    KEYS[3] imgcdn:job:{id}:specs  HASH  "<i>" the item's spec JSON (read by start only)
so they stay in one slot on a Redis Cluster too. The scripts never decode JSON: results and
specs are opaque strings to them, so nothing is reshaped by Lua's cjson.
"""

from __future__ import annotations

# Shared by finish and cancel: when every item has ended, the job ends once (finished_at
# is set exactly once, and that call answers 1). The job and its items get the keep-time
# TTL; the specs go at once: no item runs again, and an item's image may be inline base64.
_SETTLE = """
local function settle(now, keep_ms)
  local h = redis.call('HMGET', KEYS[1], 'count', 'done', 'failed', 'cancelled', 'status',
                       'finished_at')
  local ended = tonumber(h[2]) + tonumber(h[3]) + tonumber(h[4])
  if ended < tonumber(h[1]) or (h[6] and h[6] ~= '') then return 0 end
  if h[5] ~= 'cancelled' then redis.call('HSET', KEYS[1], 'status', 'completed') end
  redis.call('HSET', KEYS[1], 'finished_at', now)
  redis.call('PEXPIRE', KEYS[1], keep_ms)
  redis.call('PEXPIRE', KEYS[2], keep_ms)
  redis.call('DEL', KEYS[3])
  return 1
end
"""

# ARGV: index. Answers the spec, or nil when the item must not run (ended, cancelled, or
# the job is gone). A `running` item is handed out again: its first runner died.
START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local i = ARGV[1]
local s = redis.call('HGET', KEYS[2], i)
if s ~= 'pending' and s ~= 'running' then return false end
if s == 'pending' then
  redis.call('HSET', KEYS[2], i, 'running')
  redis.call('HINCRBY', KEYS[1], 'running', 1)
  if status == 'queued' then redis.call('HSET', KEYS[1], 'status', 'running') end
end
redis.call('HINCRBY', KEYS[2], i .. ':n', 1)
return redis.call('HGET', KEYS[3], i)
"""

# ARGV: index, 'succeeded'|'failed', outcome JSON, now, keep_ms. Answers 1 when this finish
# ended the job, else 0 (also for a second finish of the same item: it changes nothing).
FINISH = (
    _SETTLE
    + """
if not redis.call('HGET', KEYS[1], 'status') then return 0 end
local i = ARGV[1]
local s = redis.call('HGET', KEYS[2], i)
if s ~= 'pending' and s ~= 'running' then return 0 end
if s == 'running' then redis.call('HINCRBY', KEYS[1], 'running', -1) end
redis.call('HSET', KEYS[2], i, ARGV[2], i .. ':o', ARGV[3])
if ARGV[2] == 'succeeded' then
  redis.call('HINCRBY', KEYS[1], 'done', 1)
else
  redis.call('HINCRBY', KEYS[1], 'failed', 1)
end
return settle(ARGV[4], ARGV[5])
"""
)

# ARGV: '1' to check the owner (else any), owner, now, keep_ms. Answers 0 when there is no
# such job for that owner; else 1, having cancelled every pending item (idempotent: an
# ended job is left as it is). Running items still finish; the last one ends the job.
CANCEL = (
    _SETTLE
    + """
local h = redis.call('HMGET', KEYS[1], 'status', 'owner', 'count')
if not h[1] then return 0 end
if ARGV[1] == '1' and h[2] ~= ARGV[2] then return 0 end
if h[1] == 'completed' or h[1] == 'cancelled' then return 1 end
local n = 0
for i = 0, tonumber(h[3]) - 1 do
  local key = tostring(i)
  if redis.call('HGET', KEYS[2], key) == 'pending' then
    redis.call('HSET', KEYS[2], key, 'cancelled')
    n = n + 1
  end
end
redis.call('HINCRBY', KEYS[1], 'cancelled', n)
redis.call('HSET', KEYS[1], 'status', 'cancelled')
settle(ARGV[3], ARGV[4])
return 1
"""
)

# ARGV: field, value, field, value, ... Writes only while the job exists, so a late webhook
# outcome never recreates an expired job as a hash of webhook fields alone.
SET_WEBHOOK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
