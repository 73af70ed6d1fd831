-- Decides on one request against every limit that applies to it, all or nothing.
--
-- KEYS[1]    the reservation record; KEYS[2] the marker of this attempt given up;
-- KEYS[2 + i] the key of check i.
-- ARGV[1..4] lease_ttl_ms, estimated_tokens, reservation_id, attempt;
-- then five values per check: kind, capacity, window_ms, cost, shadow ("1" or "0").
-- Returns {allowed, replayed, then per check: remaining, reset_after_ms, exceeded,
-- retry_after_ms}, or {2, 0} alone when this attempt was given up before it arrived: it
-- then takes nothing. Requests and tokens limits are token buckets stored as a hash
-- {level, ts_ms} that refill continuously at capacity / window_ms; a concurrency limit is a
-- sorted set of reservation ids scored by the expiry of their lease.
--
-- Time comes from this Redis server's TIME, never from the calling replica, so every
-- replica shares one clock for the keys of a decision.

if redis.call('EXISTS', KEYS[2]) == 1 then
  return {2, 0}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lease_ttl_ms = tonumber(ARGV[1])
local estimated_tokens = tonumber(ARGV[2])
local reservation_id = ARGV[3]
local attempt = ARGV[4]
local record_key = KEYS[1]
local replayed = redis.call('EXISTS', record_key) == 1

local function bucket_level(key, capacity, window_ms)
  local stored = redis.call('HMGET', key, 'level', 'ts_ms')
  if not stored[1] then
    return capacity
  end
  -- A failover to a node whose clock lags must not drain the bucket.
  local elapsed_ms = math.max(0, now_ms - tonumber(stored[2]))
  return math.min(capacity, tonumber(stored[1]) + elapsed_ms * capacity / window_ms)
end

local function ms_to_refill(missing, capacity, window_ms)
  if missing <= 0 then
    return 0
  end
  return math.ceil(missing * window_ms / capacity)
end

local checks = {}
local denied = false
for i = 1, #KEYS - 2 do
  local base = 4 + (i - 1) * 5
  local check = {
    key = KEYS[i + 2],
    kind = ARGV[base + 1],
    capacity = tonumber(ARGV[base + 2]),
    window_ms = tonumber(ARGV[base + 3]),
    cost = tonumber(ARGV[base + 4]),
    shadow = ARGV[base + 5] == '1',
  }
  if replayed then
    check.cost = 0
  end
  if check.kind == 'concurrency' then
    redis.call('ZREMRANGEBYSCORE', check.key, '-inf', now_ms)
    check.level = redis.call('ZCARD', check.key)
    check.room = check.level + check.cost <= check.capacity
  else
    check.level = bucket_level(check.key, check.capacity, check.window_ms)
    check.room = check.level >= check.cost
  end
  if not check.room and not check.shadow then
    denied = true
  end
  checks[i] = check
end

local taken = {}
if not denied and not replayed then
  for _, check in ipairs(checks) do
    -- A shadow limit without room takes nothing: it counts what enforcing it would admit.
    if check.room then
      if check.kind == 'concurrency' then
        redis.call('ZADD', check.key, now_ms + lease_ttl_ms, reservation_id)
        redis.call('PEXPIRE', check.key, lease_ttl_ms + 1000)
        check.level = check.level + 1
      else
        check.level = check.level - check.cost
        redis.call('HSET', check.key, 'level', string.format('%.17g', check.level), 'ts_ms', now_ms)
        redis.call('PEXPIRE', check.key,
          ms_to_refill(check.capacity - check.level, check.capacity, check.window_ms) + 1000)
      end
      taken[#taken + 1] = {k = check.key, kind = check.kind, c = check.capacity,
                           w = check.window_ms, n = check.cost}
    end
  end
  local record = cjson.encode({s = 'held', e = estimated_tokens, t = taken, a = attempt})
  redis.call('SET', record_key, record, 'PX', lease_ttl_ms)
end

-- A replay answers ALLOW again: the reservation it repeats was admitted.
local reply = {(replayed or not denied) and 1 or 0, replayed and 1 or 0}
for _, check in ipairs(checks) do
  local remaining, reset_after_ms, retry_after_ms
  if check.kind == 'concurrency' then
    remaining = check.capacity - check.level
    local first = redis.call('ZRANGE', check.key, 0, 0, 'WITHSCORES')
    reset_after_ms = first[2] and math.max(0, tonumber(first[2]) - now_ms) or 0
    retry_after_ms = check.room and 0 or reset_after_ms
  else
    remaining = math.max(0, math.floor(check.level))
    reset_after_ms = ms_to_refill(check.capacity - check.level, check.capacity, check.window_ms)
    if check.room then
      retry_after_ms = 0
    elseif check.cost > check.capacity then
      -- Never fits; the best hint is when the bucket is full.
      retry_after_ms = reset_after_ms
    else
      retry_after_ms = ms_to_refill(check.cost - check.level, check.capacity, check.window_ms)
    end
  end
  reply[#reply + 1] = remaining
  reply[#reply + 1] = reset_after_ms
  reply[#reply + 1] = check.room and 0 or 1
  reply[#reply + 1] = retry_after_ms
end
return reply
