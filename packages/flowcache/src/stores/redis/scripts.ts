/**
 * The Lua scripts of the Redis store. Each one runs atomically on the node that owns its keys;
 * every script's keys share one hash tag (see ./keys.ts), so they are valid in Redis Cluster.
 *
 * Entry layout: a HASH with `v` (the value bytes), `r` (the revision, decimal) and, only when the
 * entry has a TTL, `x` (the deadline in ms since the epoch on the Redis clock). The native expiry
 * is set with PEXPIREAT to that same `x`, so Redis expires the entry itself and every read reports
 * the same deadline.
 */
import { createHash } from 'node:crypto'

/** A script and its SHA-1, for EVALSHA with an EVAL fallback when the server lacks it. */
export interface LuaScript {
  readonly name: string
  readonly lua: string
  readonly sha: string
}

/**
 * How long a revision counter lives after it is (re)started, in ms. A counter that is gone
 * restarts from the clock, so this only bounds how long an idle namespace keeps its counter key.
 */
export const COUNTER_TTL_MS = 3_600_000

/** How long the version log of a deleted key is kept after its delete marker, in ms (one hour). */
export const TOMBSTONE_TTL_MS = 3_600_000

// Helpers shared by the writing scripts. Lua numbers are doubles: every integer here (µs and ms
// since the epoch, counters) stays below 2^53, and '%.0f' prints them without an exponent, which
// tostring() and redis.call's own number conversion (%.14g) would not.
const PRELUDE = `
local function fmt(n)
  return string.format('%.0f', n)
end

-- Revisions come from one counter per hash tag. A counter that is new, expired or lost restarts
-- at the server clock in microseconds: above every revision it handed out before, unless the tag
-- averaged more than one write per microsecond, so a key never gets a revision it had before,
-- not after delete and re-create and not after a restart that lost the data.
local function reserve(counter, n)
  local last = redis.call('INCRBY', counter, n)
  if last == n then
    local t = redis.call('TIME')
    last = t[1] * 1000000 + t[2] + n
    redis.call('SET', counter, fmt(last), 'PX', ${COUNTER_TTL_MS})
  end
  return last - n + 1
end

local clock_ms
local function now_ms()
  if not clock_ms then
    local t = redis.call('TIME')
    clock_ms = t[1] * 1000 + math.floor(t[2] / 1000)
  end
  return clock_ms
end

-- Records one change of a user entry: appends it to the key's version log (a LIST, newest first,
-- trimmed to depth; each item is 'op|revision|at|deadline|' followed by the value bytes) and
-- publishes 'op|revision|at|store key' on the tag's change channel. depth '0' keeps no log and
-- channel '' publishes nothing. The log outlives the entry by ${TOMBSTONE_TTL_MS} ms, so it can
-- show a delete marker or an expired last value for that long.
local function record(hkey, op, revision, value, x, depth, channel, storekey)
  local at = fmt(now_ms())
  if depth ~= '0' then
    redis.call('LPUSH', hkey, op .. '|' .. revision .. '|' .. at .. '|' .. (x or '') .. '|' .. (value or ''))
    redis.call('LTRIM', hkey, 0, tonumber(depth) - 1)
    if op ~= 'set' then
      redis.call('PEXPIRE', hkey, ${TOMBSTONE_TTL_MS})
    elseif x and x ~= '' then
      redis.call('PEXPIREAT', hkey, fmt(tonumber(x) + ${TOMBSTONE_TTL_MS}))
    else
      redis.call('PERSIST', hkey)
    end
  end
  if channel ~= '' then
    redis.call('PUBLISH', channel, op .. '|' .. revision .. '|' .. at .. '|' .. storekey)
  end
end

-- Replaces whatever is at key (fields, TTL, even another type) with a fresh entry.
-- ttl is '' for no expiry or a positive integer of ms.
local function put(key, value, revision, ttl)
  redis.call('DEL', key)
  if ttl == '' then
    redis.call('HSET', key, 'v', value, 'r', revision)
  else
    local at = fmt(now_ms() + tonumber(ttl))
    redis.call('HSET', key, 'v', value, 'r', revision, 'x', at)
    redis.call('PEXPIREAT', key, at)
  end
end
`

function script(name: string, body: string): LuaScript {
  const lua = `${PRELUDE}\n${body.trim()}\n`
  return { name, lua, sha: createHash('sha1').update(lua).digest('hex') }
}

/**
 * One conditional write. KEYS: entry, counter, version log. ARGV: mode (`set`, `create`, `cas`),
 * expected revision (`cas`), value, ttl (`''`, ms, or `keep` to keep the entry's deadline, with
 * `cas`), history depth, change channel, store key (see `record`). Returns the new revision, or
 * nil when the condition failed. Redis expires lazily on access, so an expired entry is absent.
 */
export const WRITE = script(
  'write',
  `
local key, counter = KEYS[1], KEYS[2]
local mode, expected, value, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if mode == 'create' then
  if redis.call('EXISTS', key) == 1 then return false end
elseif mode == 'cas' then
  if redis.call('HGET', key, 'r') ~= expected then return false end
end
local revision = fmt(reserve(counter, 1))
if ttl == 'keep' then
  redis.call('HSET', key, 'v', value, 'r', revision)
else
  put(key, value, revision, ttl)
end
if ARGV[5] ~= '0' or ARGV[6] ~= '' then
  record(KEYS[3], 'set', revision, value, redis.call('HGET', key, 'x'), ARGV[5], ARGV[6], ARGV[7])
end
return revision
`,
)

/**
 * Unconditional writes of many entries. KEYS: entry1, counter1, log1, entry2, counter2, log2, …
 * ARGV: per entry its value, ttl, history depth, change channel and store key.
 * Returns the revisions in order.
 */
export const SET_MANY = script(
  'setMany',
  `
local revisions = {}
for i = 1, #KEYS / 3 do
  local k, a = 3 * i - 2, 5 * i - 4
  local revision = fmt(reserve(KEYS[k + 1], 1))
  put(KEYS[k], ARGV[a], revision, ARGV[a + 1])
  if ARGV[a + 2] ~= '0' or ARGV[a + 3] ~= '' then
    record(KEYS[k + 2], 'set', revision, ARGV[a], redis.call('HGET', KEYS[k], 'x'), ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  end
  revisions[#revisions + 1] = revision
end
return revisions
`,
)

/**
 * Deletes entries, leaving a delete marker in their log. KEYS: entry1, counter1, log1, …
 * ARGV: expected revision (`''` = any), then per entry its history depth, change channel and
 * store key. Returns how many entries existed (and were deleted).
 */
export const DELETE_MANY = script(
  'deleteMany',
  `
local expected = ARGV[1]
local deleted = 0
for i = 1, #KEYS / 3 do
  local k, a = 3 * i - 2, 3 * i - 1
  local current = redis.call('HGET', KEYS[k], 'r')
  if current and (expected == '' or current == expected) then
    redis.call('DEL', KEYS[k])
    deleted = deleted + 1
    if ARGV[a] ~= '0' or ARGV[a + 1] ~= '' then
      record(KEYS[k + 2], 'delete', fmt(reserve(KEYS[k + 1], 1)), nil, nil, ARGV[a], ARGV[a + 1], ARGV[a + 2])
    end
  end
end
return deleted
`,
)

/**
 * Deletes entries and their version logs (`clear`). KEYS: entry1, log1, entry2, log2, …
 * ARGV: per entry its change channel and store key. Returns how many entries existed.
 */
export const FORGET_MANY = script(
  'forgetMany',
  `
local deleted = 0
for i = 1, #KEYS / 2 do
  local k = 2 * i - 1
  if redis.call('DEL', KEYS[k]) == 1 then
    deleted = deleted + 1
    if ARGV[k] ~= '' then
      redis.call('PUBLISH', ARGV[k], 'delete||' .. fmt(now_ms()) .. '|' .. ARGV[k + 1])
    end
  end
  redis.call('DEL', KEYS[k + 1])
end
return deleted
`,
)

/** Reads many entries. KEYS: the entries. Returns `v, r, x` per key, nil for what is missing. */
export const GET_MANY = script(
  'getMany',
  `
local out = {}
for i = 1, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'v', 'r', 'x')
  out[#out + 1] = fields[1]
  out[#out + 1] = fields[2]
  out[#out + 1] = fields[3]
end
return out
`,
)

/**
 * Adds to a number stored as JSON text. KEYS: entry, counter, version log. ARGV: by (JS number
 * text), the encoded value of `by` for a missing entry, ttl for a missing entry ('' or ms),
 * history depth, change channel, store key.
 * Returns `{'new'}` when it created the entry, `{'sum', text}` with the new JSON text, or
 * `{'codec'}` when the stored text is not a plain JSON number or the sum is not finite: the
 * caller then decides with its codec (tagged numbers, NaN, or not a number at all).
 */
export const INCREMENT = script(
  'increment',
  `
-- The JSON number grammar, strictly: tonumber() alone would also take hex, 'inf', 'nan' and spaces.
local function json_number(s)
  local i = 1
  if string.sub(s, 1, 1) == '-' then i = 2 end
  local a, b = string.find(s, '^%d+', i)
  if not a then return nil end
  if b > a and string.sub(s, a, a) == '0' then return nil end
  i = b + 1
  if string.sub(s, i, i) == '.' then
    a, b = string.find(s, '^%d+', i + 1)
    if not a then return nil end
    i = b + 1
  end
  local e = string.sub(s, i, i)
  if e == 'e' or e == 'E' then
    i = i + 1
    local sign = string.sub(s, i, i)
    if sign == '+' or sign == '-' then i = i + 1 end
    a, b = string.find(s, '^%d+', i)
    if not a then return nil end
    i = b + 1
  end
  if i ~= #s + 1 then return nil end
  return tonumber(s)
end

-- The shortest text that reads back as exactly x: integers below 2^53 in plain digits (as
-- JSON.stringify writes them), other numbers with the fewest significant digits that round-trip.
local function number_text(x)
  if x == 0 then return '0' end
  if x == math.floor(x) and x > -9007199254740992 and x < 9007199254740992 then
    return fmt(x)
  end
  for precision = 15, 16 do
    local text = string.format('%.' .. precision .. 'g', x)
    if tonumber(text) == x then return text end
  end
  return string.format('%.17g', x)
end

local key, counter = KEYS[1], KEYS[2]
local tracked = ARGV[4] ~= '0' or ARGV[5] ~= ''
local current = redis.call('HGET', key, 'v')
if not current then
  local revision = fmt(reserve(counter, 1))
  put(key, ARGV[2], revision, ARGV[3])
  if tracked then
    record(KEYS[3], 'set', revision, ARGV[2], redis.call('HGET', key, 'x'), ARGV[4], ARGV[5], ARGV[6])
  end
  return {'new'}
end
local n = json_number(current)
if n == nil then return {'codec'} end
local sum = n + tonumber(ARGV[1])
if sum ~= sum or sum == math.huge or sum == -math.huge then return {'codec'} end
local text = number_text(sum)
-- HSET keeps the key's TTL and its 'x' field: an existing counter keeps its deadline.
local revision = fmt(reserve(counter, 1))
redis.call('HSET', key, 'v', text, 'r', revision)
if tracked then
  record(KEYS[3], 'set', revision, text, redis.call('HGET', key, 'x'), ARGV[4], ARGV[5], ARGV[6])
end
return {'sum', text}
`,
)
