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

/**
 * Most keys one quota script call removes from a quota (expired keys dropped plus live keys
 * evicted) when a quota is set, lowered, adopted or read: a call never blocks Redis for long, and
 * the caller calls again while the quota is still over.
 */
export const QUOTA_EVICTION_BUDGET = 1000

/**
 * Most keys a write removes from each quota over its key, per entry written: enough to make room
 * for the entry in the normal case (values of similar sizes), and a bound on the time one write
 * spends evicting when a quota is far over (just lowered, or adopting keys written before it).
 * That backlog is left to the budgeted loop of `setQuota`.
 */
export const WRITE_EVICTION_BUDGET = 128

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

-- Namespace quotas (see QUOTA in ./index.ts for the layout). A quota on prefix P is defined by
-- the field P ('<maxEntries> <maxBytes>') of a definitions HASH: '{<tag>}#quotas' when P fixes
-- the hash tag (two dots or more), else the store-wide directory (standalone Redis only). Its
-- accounting lives next to that definition, in keys '<definitions>:<P>:' followed by 'size'
-- (HASH store key -> bytes), 'lru' (ZSET store key -> access tick), 'exp' (ZSET store key ->
-- deadline) and 'stat' (HASH bytes, evictions, tick, adopted, and set: when the definition was
-- set, in ms on the Redis clock). Scripts that take quotas start with three
-- ARGV: the directory key ('' on a Cluster), the quotas this replica set ('P|def set;' repeated,
-- so enforcement never waits for their registration) and '1' when deletes are published.
local quota_directory, quota_changes = '', false
local quota_local, quota_defs = {}, {}

local function quota_setup()
  quota_directory = ARGV[1]
  for prefix, def in string.gmatch(ARGV[2], '([^|;]*)|([^;]*);') do quota_local[prefix] = def end
  quota_changes = ARGV[3] == '1'
end

local function is_user(storekey)
  local leaf = string.match(storekey, '[^.]*$')
  return string.sub(leaf, 1, 2) == 'k/'
end

-- The Redis key of a store key and its hash tag, as ./keys.ts maps them.
local function redis_key(storekey)
  local stop = #storekey + 1
  local first = string.find(storekey, '.', 1, true)
  if first then stop = string.find(storekey, '.', first + 1, true) or first end
  local tag = string.sub(storekey, 1, stop - 1)
  return '{' .. tag .. '}' .. string.sub(storekey, stop), tag
end

local function definitions_key(prefix)
  local first = string.find(prefix, '.', 1, true)
  local second = first and string.find(prefix, '.', first + 1, true)
  if second then return '{' .. string.sub(prefix, 1, second - 1) .. '}#quotas' end
  return quota_directory
end

-- The quota on exactly this prefix, or false. The definition set last wins: one this replica
-- passed that is newer than the one in Redis (a setQuota whose registration has not landed yet)
-- or that Redis lacks (lost with the data) is used and registered; an older one gives way to the
-- one in Redis, set since by another replica.
local function quota_on(prefix)
  local known = quota_defs[prefix]
  if known ~= nil then return known end
  local defs = definitions_key(prefix)
  local q = false
  if defs ~= '' then
    local def = redis.call('HGET', defs, prefix)
    local limits, at = string.match(quota_local[prefix] or '', '^(%d+ %d+) ?(%d*)$')
    if limits then
      local stat = defs .. ':' .. prefix .. ':stat'
      at = tonumber(at) or 0
      if not def or at > tonumber(redis.call('HGET', stat, 'set') or '0') then
        def = limits
        redis.call('HSET', defs, prefix, def)
        redis.call('HSET', stat, 'set', fmt(at))
      end
    end
    if def then
      local entries, bytes = string.match(def, '^(%d+) (%d+)$')
      if entries then
        local base = defs .. ':' .. prefix .. ':'
        q = { prefix = prefix, size = base .. 'size', lru = base .. 'lru', exp = base .. 'exp',
          stat = base .. 'stat', max_entries = tonumber(entries), max_bytes = tonumber(bytes) }
      end
    end
  end
  quota_defs[prefix] = q
  return q
end

-- The quotas a user key counts toward: the store-wide one ('') and one per namespace above it.
local function quotas_of(storekey)
  local found = {}
  local q = quota_on('')
  if q then found[#found + 1] = q end
  local at = 0
  while true do
    local dot = string.find(storekey, '.', at + 1, true)
    if not dot then break end
    q = quota_on(string.sub(storekey, 1, dot))
    if q then found[#found + 1] = q end
    at = dot
  end
  return found
end

-- An error text when an entry of size bytes could never fit a quota of its key, else nil.
local function too_large(storekey, size)
  for _, q in ipairs(quotas_of(storekey)) do
    if size > q.max_bytes then
      return 'FLOWCACHE_TOO_LARGE entry needs ' .. size .. ' bytes but the quota of namespace ' ..
        q.prefix .. ' (maxBytes) is ' .. fmt(q.max_bytes) .. '; raise the quota or store less'
    end
  end
  return nil
end

local function quota_forget(q, storekey)
  local size = redis.call('HGET', q.size, storekey)
  redis.call('ZREM', q.lru, storekey)
  redis.call('ZREM', q.exp, storekey)
  if size then
    redis.call('HDEL', q.size, storekey)
    redis.call('HINCRBY', q.stat, 'bytes', -tonumber(size))
  end
end

-- Stops counting a user key (deleted, cleared, evicted or expired) in every quota over it.
local function unaccount(storekey)
  for _, q in ipairs(quotas_of(storekey)) do quota_forget(q, storekey) end
end

local function quota_touch(q, storekey)
  redis.call('ZADD', q.lru, 'XX', redis.call('HINCRBY', q.stat, 'tick', 1), storekey)
end

-- Counts a user key written with size bytes and deadline ('' or false for none) as the most
-- recently used of every quota over it; adds those quotas to touched (by prefix).
local function account(storekey, size, deadline, touched)
  for _, q in ipairs(quotas_of(storekey)) do
    local old = redis.call('HGET', q.size, storekey)
    redis.call('HSET', q.size, storekey, size)
    local delta = size - (tonumber(old) or 0)
    if delta ~= 0 then redis.call('HINCRBY', q.stat, 'bytes', delta) end
    redis.call('ZADD', q.lru, redis.call('HINCRBY', q.stat, 'tick', 1), storekey)
    if deadline and deadline ~= '' then
      redis.call('ZADD', q.exp, deadline, storekey)
    else
      redis.call('ZREM', q.exp, storekey)
    end
    touched[q.prefix] = q
  end
end

-- Accounts a user entry that is in Redis already (written before its quota existed) as the
-- least recently used; false when it is missing or counted already.
local function adopt(q, storekey)
  if redis.call('HEXISTS', q.size, storekey) == 1 then return false end
  local key = redis_key(storekey)
  local fields = redis.call('HMGET', key, 'r', 'x')
  if not fields[1] then return false end
  local size = redis.call('HSTRLEN', key, 'v') + #storekey
  redis.call('HSET', q.size, storekey, size)
  redis.call('HINCRBY', q.stat, 'bytes', size)
  redis.call('ZADD', q.lru, 0, storekey)
  if fields[2] then redis.call('ZADD', q.exp, fields[2], storekey) end
  return true
end

local function over(q)
  return redis.call('HLEN', q.size) > q.max_entries or
    tonumber(redis.call('HGET', q.stat, 'bytes') or '0') > q.max_bytes
end

-- Stops counting up to limit (at most 100) expired keys of q; returns how many. Redis expires
-- entries itself (past the deadline they read as absent), so only the accounting is left to drop.
local function drop_expired(q, limit)
  if limit <= 0 then return 0 end
  local due = redis.call('ZRANGEBYSCORE', q.exp, '-inf', '(' .. fmt(now_ms()), 'LIMIT', 0,
    math.min(limit, 100))
  for _, storekey in ipairs(due) do unaccount(storekey) end
  return #due
end

-- Evicts least recently used user keys of q until it is within its limits, after dropping
-- expired keys: a live key never goes while an expired one still counts. Each eviction deletes
-- the entry and its version log and publishes a delete. Removes at most budget keys (expired
-- ones dropped and live ones evicted), so one script never blocks Redis for long. Returns how
-- many were evicted, and true when q is still over because the budget ran out.
local function enforce(q, budget)
  local evicted, removed = 0, 0
  while removed < budget and over(q) do
    local dropped = drop_expired(q, budget - removed)
    removed = removed + dropped
    if dropped == 0 then
      local victim = redis.call('ZRANGE', q.lru, 0, 0)[1]
      if not victim then break end
      unaccount(victim)
      removed = removed + 1
      local key, tag = redis_key(victim)
      if redis.call('DEL', key) == 1 then
        redis.call('DEL', key .. '#h')
        evicted = evicted + 1
        if quota_changes then
          redis.call('PUBLISH', 'flowcache:w:' .. tag, 'delete||' .. fmt(now_ms()) .. '|' .. victim)
        end
      end
    end
  end
  if evicted > 0 then redis.call('HINCRBY', q.stat, 'evictions', evicted) end
  return evicted, removed >= budget and over(q)
end

-- Enforces the quotas a write touched, each within budget: a quota far over its limits (just
-- lowered, or adopting keys written before it) is brought back by the loop of setQuota.
local function enforce_all(touched, budget)
  for _, q in pairs(touched) do enforce(q, budget) end
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
 * One conditional write. KEYS: entry, counter, version log. ARGV: the three quota arguments (see
 * `quota_setup`), mode (`set`, `create`, `cas`), expected revision (`cas`), value, ttl (`''`, ms,
 * or `keep` to keep the entry's deadline, with `cas`), history depth, change channel, store key
 * (see `record`). Returns the new revision, or nil when the condition failed; an error reply
 * `FLOWCACHE_TOO_LARGE …` when the entry alone exceeds a quota's maxBytes. A user entry counts
 * toward the quotas over it, which evict their least recently used keys when over (at most
 * {@link WRITE_EVICTION_BUDGET} per quota).
 */
export const WRITE = script(
  'write',
  `
quota_setup()
local key, counter = KEYS[1], KEYS[2]
local mode, expected, value, ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local storekey = ARGV[10]
local user = is_user(storekey)
if user then
  local refused = too_large(storekey, #value + #storekey)
  if refused then return redis.error_reply(refused) end
end
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
if ARGV[8] ~= '0' or ARGV[9] ~= '' then
  record(KEYS[3], 'set', revision, value, redis.call('HGET', key, 'x'), ARGV[8], ARGV[9], storekey)
end
if user then
  local touched = {}
  account(storekey, #value + #storekey, redis.call('HGET', key, 'x'), touched)
  enforce_all(touched, ${WRITE_EVICTION_BUDGET})
end
return revision
`,
)

/**
 * Unconditional writes of many entries. KEYS: entry1, counter1, log1, entry2, counter2, log2, …
 * ARGV: the three quota arguments, then per entry its value, ttl, history depth, change channel
 * and store key. Returns the revisions in order. Quotas are enforced once, after every write,
 * removing at most {@link WRITE_EVICTION_BUDGET} keys per entry written (and at most
 * {@link QUOTA_EVICTION_BUDGET}) from each.
 */
export const SET_MANY = script(
  'setMany',
  `
quota_setup()
local n = #KEYS / 3
for i = 1, n do
  local a = 5 * i - 1
  local storekey = ARGV[a + 4]
  if is_user(storekey) then
    local refused = too_large(storekey, #ARGV[a] + #storekey)
    if refused then return redis.error_reply(refused) end
  end
end
local revisions = {}
local touched = {}
for i = 1, n do
  local k, a = 3 * i - 2, 5 * i - 1
  local revision = fmt(reserve(KEYS[k + 1], 1))
  put(KEYS[k], ARGV[a], revision, ARGV[a + 1])
  if ARGV[a + 2] ~= '0' or ARGV[a + 3] ~= '' then
    record(KEYS[k + 2], 'set', revision, ARGV[a], redis.call('HGET', KEYS[k], 'x'), ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  end
  if is_user(ARGV[a + 4]) then
    account(ARGV[a + 4], #ARGV[a] + #ARGV[a + 4], redis.call('HGET', KEYS[k], 'x'), touched)
  end
  revisions[#revisions + 1] = revision
end
enforce_all(touched, math.min(${QUOTA_EVICTION_BUDGET}, ${WRITE_EVICTION_BUDGET} * n))
return revisions
`,
)

/**
 * Deletes entries, leaving a delete marker in their log. KEYS: entry1, counter1, log1, …
 * ARGV: the three quota arguments, expected revision (`''` = any), then per entry its history
 * depth, change channel and store key. Returns how many entries existed (and were deleted).
 * A deleted user key stops counting toward its quotas.
 */
export const DELETE_MANY = script(
  'deleteMany',
  `
quota_setup()
local expected = ARGV[4]
local deleted = 0
for i = 1, #KEYS / 3 do
  local k, a = 3 * i - 2, 3 * i + 2
  local current = redis.call('HGET', KEYS[k], 'r')
  if current and (expected == '' or current == expected) then
    redis.call('DEL', KEYS[k])
    deleted = deleted + 1
    if ARGV[a] ~= '0' or ARGV[a + 1] ~= '' then
      record(KEYS[k + 2], 'delete', fmt(reserve(KEYS[k + 1], 1)), nil, nil, ARGV[a], ARGV[a + 1], ARGV[a + 2])
    end
    if is_user(ARGV[a + 2]) then unaccount(ARGV[a + 2]) end
  elseif not current and expected == '' and is_user(ARGV[a + 2]) then
    -- Gone already (expired): it stops counting now rather than at the next enforcement.
    unaccount(ARGV[a + 2])
  end
end
return deleted
`,
)

/**
 * Deletes entries and their version logs (`clear`). KEYS: entry1, log1, entry2, log2, …
 * ARGV: the three quota arguments, then per entry its change channel and store key. Returns how
 * many entries existed. The keys stop counting toward their quotas.
 */
export const FORGET_MANY = script(
  'forgetMany',
  `
quota_setup()
local deleted = 0
for i = 1, #KEYS / 2 do
  local k, a = 2 * i - 1, 2 * i + 2
  if redis.call('DEL', KEYS[k]) == 1 then
    deleted = deleted + 1
    if ARGV[a] ~= '' then
      redis.call('PUBLISH', ARGV[a], 'delete||' .. fmt(now_ms()) .. '|' .. ARGV[a + 1])
    end
  end
  redis.call('DEL', KEYS[k + 1])
  if is_user(ARGV[a + 1]) then unaccount(ARGV[a + 1]) end
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
 * Reads entries under a quota and marks each hit as the most recently used key of its quotas
 * (LRU). KEYS: the entries. ARGV: the three quota arguments, then the store keys. Returns
 * `v, r, x` per key like {@link GET_MANY}.
 */
export const GET_TOUCH = script(
  'getTouch',
  `
quota_setup()
local out = {}
for i = 1, #KEYS do
  local fields = redis.call('HMGET', KEYS[i], 'v', 'r', 'x')
  out[#out + 1] = fields[1]
  out[#out + 1] = fields[2]
  out[#out + 1] = fields[3]
  local storekey = ARGV[3 + i]
  if fields[2] and is_user(storekey) then
    for _, q in ipairs(quotas_of(storekey)) do quota_touch(q, storekey) end
  end
end
return out
`,
)

/**
 * Records a quota and enforces it. KEYS: none. ARGV: the three quota arguments (the second one
 * holds the definition), the prefix, and a budget of removals. Returns `{adopted, evicted, more}`:
 * adopted = 1 when the quota's existing keys were counted already, 0 when the caller must count
 * them (with ADOPT, and nothing is enforced yet), how many keys it evicted, and more = 1 when the
 * budget ran out with the quota still over (call again).
 */
export const SET_QUOTA = script(
  'setQuota',
  `
quota_setup()
local prefix = ARGV[4]
local def = quota_local[prefix]
local defs = definitions_key(prefix)
if not def or defs == '' then return redis.error_reply('FLOWCACHE_QUOTA no definition') end
-- Registers the definition unless Redis holds a newer one (set since by another replica).
local q = quota_on(prefix)
local adopted = redis.call('HGET', q.stat, 'adopted') and 1 or 0
local evicted, more = 0, false
if adopted == 1 then evicted, more = enforce(q, tonumber(ARGV[5])) end
return { adopted, evicted, more and 1 or 0 }
`,
)

/**
 * Counts user entries that existed before their quota (found by SCAN) as its least recently used
 * keys. ARGV: the three quota arguments, the prefix, '1' when the SCAN is complete (then the
 * quota is marked adopted and enforced), the budget of removals, then the store keys.
 * Returns `{evicted, more}` like {@link SET_QUOTA}: more = 1 when the quota is still over.
 */
export const ADOPT = script(
  'adopt',
  `
quota_setup()
local q = quota_on(ARGV[4])
if not q then return { 0, 0 } end
for i = 7, #ARGV do
  if string.sub(ARGV[i], 1, #q.prefix) == q.prefix and is_user(ARGV[i]) then adopt(q, ARGV[i]) end
end
if ARGV[5] ~= '1' then return { 0, 0 } end
redis.call('HSET', q.stat, 'adopted', '1')
local evicted, more = enforce(q, tonumber(ARGV[6]))
return { evicted, more and 1 or 0 }
`,
)

/**
 * What a quota uses now, expired keys dropped first. ARGV: the three quota arguments, the prefix.
 * Drops at most {@link QUOTA_EVICTION_BUDGET} expired keys per call. Returns
 * `{entries, bytes, evictions, more}`, more = 1 when expired keys still count (call again for
 * honest figures), or nil when no quota is defined on the prefix.
 */
export const QUOTA_USAGE = script(
  'quotaUsage',
  `
quota_setup()
local q = quota_on(ARGV[4])
if not q then return false end
local dropped = 0
while dropped < ${QUOTA_EVICTION_BUDGET} do
  local n = drop_expired(q, ${QUOTA_EVICTION_BUDGET} - dropped)
  if n == 0 then break end
  dropped = dropped + n
end
local more = 0
if dropped >= ${QUOTA_EVICTION_BUDGET} and
  #redis.call('ZRANGEBYSCORE', q.exp, '-inf', '(' .. fmt(now_ms()), 'LIMIT', 0, 1) > 0 then
  more = 1
end
local stat = redis.call('HMGET', q.stat, 'bytes', 'evictions')
return { redis.call('HLEN', q.size), tonumber(stat[1] or '0'), tonumber(stat[2] or '0'), more }
`,
)

/**
 * Adds to a number stored as JSON text. KEYS: entry, counter, version log. ARGV: the three quota
 * arguments, by (JS number text), the encoded value of `by` for a missing entry, ttl for a
 * missing entry ('' or ms), history depth, change channel, store key.
 * Returns `{'new'}` when it created the entry, `{'sum', text}` with the new JSON text, or
 * `{'codec'}` when the stored text is not a plain JSON number or the sum is not finite: the
 * caller then decides with its codec (tagged numbers, NaN, or not a number at all). An error
 * reply `FLOWCACHE_TOO_LARGE …` when the new value alone exceeds a quota's maxBytes (the entry is
 * left as it was).
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

quota_setup()
local key, counter = KEYS[1], KEYS[2]
local by, initial, ttl, depth, channel, storekey = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local tracked = depth ~= '0' or channel ~= ''
local user = is_user(storekey)
local current = redis.call('HGET', key, 'v')
if not current then
  if user then
    local refused = too_large(storekey, #initial + #storekey)
    if refused then return redis.error_reply(refused) end
  end
  local revision = fmt(reserve(counter, 1))
  put(key, initial, revision, ttl)
  if tracked then
    record(KEYS[3], 'set', revision, initial, redis.call('HGET', key, 'x'), depth, channel, storekey)
  end
  if user then
    local touched = {}
    account(storekey, #initial + #storekey, redis.call('HGET', key, 'x'), touched)
    enforce_all(touched, ${WRITE_EVICTION_BUDGET})
  end
  return {'new'}
end
local n = json_number(current)
if n == nil then return {'codec'} end
local sum = n + tonumber(by)
if sum ~= sum or sum == math.huge or sum == -math.huge then return {'codec'} end
local text = number_text(sum)
if user then
  local refused = too_large(storekey, #text + #storekey)
  if refused then return redis.error_reply(refused) end
end
-- HSET keeps the key's TTL and its 'x' field: an existing counter keeps its deadline.
local revision = fmt(reserve(counter, 1))
redis.call('HSET', key, 'v', text, 'r', revision)
if tracked then
  record(KEYS[3], 'set', revision, text, redis.call('HGET', key, 'x'), depth, channel, storekey)
end
if user then
  local touched = {}
  account(storekey, #text + #storekey, redis.call('HGET', key, 'x'), touched)
  enforce_all(touched, ${WRITE_EVICTION_BUDGET})
end
return {'sum', text}
`,
)
