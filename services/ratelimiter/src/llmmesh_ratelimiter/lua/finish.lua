-- Settles or releases a held reservation: corrects token buckets, frees the lease.
--
-- KEYS[1]    the reservation record; KEYS[1 + i] the key of the record's entry i.
-- ARGV       the record as the caller read it, actual_tokens, mode ("settle" or "release"),
--            reservation_id.
-- Returns {found, estimated_tokens}. The record must still be exactly what the caller read
-- and still held, so a settle races neither a second settle nor an expiry.
-- Settling charges tokens beyond the estimate even when that drives a bucket below zero:
-- the debt is real usage and is repaid by refill before the next request fits.

local raw = redis.call('GET', KEYS[1])
if not raw or raw ~= ARGV[1] then
  return {0, 0}
end
local record = cjson.decode(raw)
if record.s ~= 'held' then
  return {0, 0}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local actual_tokens = tonumber(ARGV[2])
local release = ARGV[3] == 'release'
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

for i, entry in ipairs(record.t) do
  local key = KEYS[i + 1]
  if entry.kind == 'concurrency' then
    redis.call('ZREM', key, reservation_id)
  elseif entry.kind == 'tokens' then
    local used = release and 0 or actual_tokens
    adjust_bucket(key, entry.c, entry.w, entry.n - used)
  elseif release then
    adjust_bucket(key, entry.c, entry.w, entry.n)
  end
end

record.s = 'done'
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return {1, record.e}
