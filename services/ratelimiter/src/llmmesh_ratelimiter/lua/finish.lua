-- Finishes a held reservation: settles it (corrects token buckets, frees the lease), releases
-- it (gives everything back), or abandons one attempt at it: releases it only if that attempt
-- took it and, when nothing is there yet, marks the attempt so it takes nothing if its script
-- reaches Redis later.
--
-- KEYS[1]    the reservation record; KEYS[1 + i] the key of the record's entry i; in abandon
--            mode the last key is the marker of the abandoned attempt.
-- ARGV       the record as the caller read it ('' when there was none), actual_tokens, mode
--            ("settle", "release" or "abandon"), reservation_id, attempt, marker_ttl_ms.
-- Returns {code, estimated_tokens, actual_tokens}: 1 finished now; 2 finished before in the
-- same mode, so this repeat changes nothing and answers as the first did; 0 nothing to
-- finish (unknown, expired, finished in another mode, or held by another attempt); 3 the
-- record changed since the caller read it (the caller reads it again).
-- The record must still be exactly what the caller read, so a finish races neither a second
-- finish nor an expiry. Settling charges tokens beyond the estimate even when that drives a
-- bucket below zero: the debt is real usage and is repaid by refill before the next request fits.

local mode = ARGV[3]
local raw = redis.call('GET', KEYS[1])
if not raw then
  if mode == 'abandon' then
    redis.call('SET', KEYS[#KEYS], '1', 'PX', ARGV[6])
    return {1, 0, 0}
  end
  return {0, 0, 0}
end
local record = cjson.decode(raw)
if record.s ~= 'held' then
  if record.m == mode then
    return {2, record.e, record.u}
  end
  return {0, 0, 0}
end
if raw ~= ARGV[1] then
  return {3, 0, 0}
end
if mode == 'abandon' and record.a ~= ARGV[5] then
  -- Another attempt holds it; a late arrival of this one replays and takes nothing.
  return {0, 0, 0}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local release = mode ~= 'settle'
local actual_tokens = release and 0 or tonumber(ARGV[2])
local reservation_id = ARGV[4]

local function adjust_bucket(key, capacity, window_ms, delta)
  local stored = redis.call('HMGET', key, 'level', 'ts_ms')
  local level = capacity
  if stored[1] then
    local elapsed_ms = math.max(0, now_ms - tonumber(stored[2]))
    level = math.min(capacity, tonumber(stored[1]) + elapsed_ms * capacity / window_ms)
  end
  level = math.min(capacity, level + delta)
  redis.call('HSET', key, 'level', string.format('%.17g', level), 'ts_ms', now_ms)
  local refill_ms = 0
  if level < capacity then
    refill_ms = math.ceil((capacity - level) * window_ms / capacity)
  end
  redis.call('PEXPIRE', key, refill_ms + 1000)
end

-- cjson writes an empty Lua table as an object, so a record that took nothing has {}.
for i, entry in ipairs(record.t) do
  local key = KEYS[i + 1]
  if entry.kind == 'concurrency' then
    redis.call('ZREM', key, reservation_id)
  elseif entry.kind == 'tokens' then
    adjust_bucket(key, entry.c, entry.w, entry.n - actual_tokens)
  elseif release then
    adjust_bucket(key, entry.c, entry.w, entry.n)
  end
end

record.s = 'done'
record.m = mode
record.u = actual_tokens
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return {1, record.e, actual_tokens}
