//! The Lua scripts that make each [`Cache`](crescendo_cache::Cache) operation atomic on its
//! server, and the Redis keys they touch: an entry's hash, its load lease, and the
//! server's highest write position.

use std::time::Duration;

/// Where the highest write position each server has seen is kept.
pub(super) const FENCE_KEY: &str = "c|fence";

/// How long a version without a value lives (an entry that is invalidated, or looked up and
/// not yet filled).
pub(super) const STUB_TTL: Duration = Duration::from_secs(120);

/// How long a load lease holds unless renewed: the loader renews it while it loads
/// (`crescendo_cache::LEASE_RENEW_EVERY`), so this only has to outlast a few renewals, and
/// readers waiting on a loader that died load themselves soon.
pub(super) const LOAD_LEASE: Duration = Duration::from_millis(500);

/// The scripts, made once per ring: each runs by its hash (`EVALSHA`), and its body is sent
/// only to a server that does not know it yet.
pub(super) struct Scripts {
    pub(super) lookup: redis::Script,
    pub(super) fill: redis::Script,
    pub(super) invalidate: redis::Script,
    pub(super) versions: redis::Script,
    pub(super) release: redis::Script,
    pub(super) renew: redis::Script,
    pub(super) empty: redis::Script,
}

impl Scripts {
    /// Every script of the ring.
    pub(super) fn new() -> Self {
        Self {
            lookup: redis::Script::new(LOOKUP),
            fill: redis::Script::new(FILL),
            invalidate: redis::Script::new(INVALIDATE),
            versions: redis::Script::new(VERSIONS),
            release: redis::Script::new(RELEASE),
            renew: redis::Script::new(RENEW),
            empty: redis::Script::new(EMPTY),
        }
    }
}

/// The Redis key of an entry: a hash with fields `v` (version), `f` (fence), `d` (value).
pub(super) fn entry_key(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 2);
    k.push_str("c:");
    k.push_str(key);
    k
}

/// The key of an entry's load lease (its value: `TOKEN:VERSION`, the holder's lease token and
/// the version it loads).
pub(super) fn lease_key(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 3);
    k.push_str("cl:");
    k.push_str(key);
    k
}

/// KEYS: entry, fence key, lease key. ARGV: a new version, the version the caller holds,
/// stub TTL (ms), lease TTL (ms), the caller's lease token. Returns {version, fence, wait[,
/// value]}. Creates the version (with the highest fence the server has seen, or "unknown")
/// when the entry is absent. With no value to give, the caller gets the load lease of that
/// version (wait '0'; a lease the caller's process holds already counts as its own) unless
/// another process holds it (wait '1').
const LOOKUP: &str = r"
local e = redis.call('HMGET', KEYS[1], 'v', 'f', 'd')
if e[1] and e[1] == ARGV[2] then return {e[1], e[2], '0'} end
if e[1] and e[3] then return {e[1], e[2], '0', e[3]} end
local v, f = e[1], e[2]
if not v then
  v = ARGV[1]
  f = redis.call('GET', KEYS[2]) or 'unknown'
  redis.call('HSET', KEYS[1], 'v', v, 'f', f)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local mine = ARGV[5] .. ':' .. v
if redis.call('SET', KEYS[3], mine, 'NX', 'PX', ARGV[4]) then return {v, f, '0'} end
if redis.call('GET', KEYS[3]) == mine then return {v, f, '0'} end
return {v, f, '1'}
";

/// KEYS: entry, lease key. ARGV: version, value, TTL (ms), the caller's lease token. Stores
/// the value if the version is current, and ends the caller's lease for that version.
const FILL: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[4] .. ':' .. ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('HGET', KEYS[1], 'v') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'd', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
";

/// KEYS: lease key. ARGV: version, the caller's lease token (and the lease TTL, unused).
/// Ends the caller's lease for that version.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[2] .. ':' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// KEYS: lease key. ARGV: version, the caller's lease token, lease TTL (ms). Extends the
/// caller's lease for that version.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[2] .. ':' .. ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 0
";

/// KEYS: entries..., their lease keys..., fence key. ARGV: write position, stub TTL (ms), a
/// new version per entry. Raises the server's highest fence, gives each entry its new
/// version, no value, and a fence of at least the write's position, and ends its load lease
/// (a load under the old version can no longer fill).
const INVALIDATE: &str = r"
local n = (#KEYS - 1) / 2
local p = tonumber(ARGV[1])
local m = tonumber(redis.call('GET', KEYS[2 * n + 1]) or '0') or 0
if p > m then
  redis.call('SET', KEYS[2 * n + 1], ARGV[1])
  m = p
end
for i = 1, n do
  local f = tonumber(redis.call('HGET', KEYS[i], 'f') or '0') or m
  if p > f then f = p end
  redis.call('DEL', KEYS[i], KEYS[n + i])
  redis.call('HSET', KEYS[i], 'v', ARGV[i + 2], 'f', string.format('%.0f', f))
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return n
";

/// KEYS: fence key. ARGV: write position. Deletes every key of the server, then sets its
/// highest fence to the larger of the one it had and the position, so entries made after it
/// are loaded at least that fresh (a server that had no fence keeps none: "unknown", the
/// freshest copy). Atomic: no lookup sees the server empty without its fence.
const EMPTY: &str = r"
local had = redis.call('GET', KEYS[1])
redis.call('FLUSHDB')
if had then
  local f = tonumber(had) or 0
  local p = tonumber(ARGV[1])
  if p > f then f = p end
  redis.call('SET', KEYS[1], string.format('%.0f', f))
end
return 1
";

/// KEYS: entries. Returns each entry's version, '0' when absent.
const VERSIONS: &str = r"
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HGET', k, 'v') or '0' end
return out
";
