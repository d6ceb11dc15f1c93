//! [`RedisCache`]: the `Cache` seam on several independent Redis servers.
//!
//! **Placement.** A client-side consistent-hash ring: each server owns [`RingOptions::vnodes`]
//! points, placed by [`stable_hash`] of `"{host:port}#{i}"`; a key belongs to the first
//! server in the ring, clockwise from the key's own hash, that is in service. Every web node
//! computes the same ring from the same list of servers, so they agree without talking.
//! When a server leaves, only its keys move (to the servers after its points); when it
//! returns, they move back. Redis Cluster would do the placement on the servers instead, but
//! needs at least three masters with replicas to survive a loss, moves keys itself by hash
//! slots, and redirects clients mid-request; independent servers that know nothing of each
//! other are simpler to run and to reason about for a cache, whose content can always be
//! loaded again.
//!
//! **Entries.** Each key is one Redis hash `c:{key}` with fields `v` (its version, a random
//! 64-bit number), `f` (the store position a load must read) and `d` (the value, when
//! cached). Each operation of [`Cache`] is one Lua script, so it is atomic on its server:
//! a lookup creates the version when absent, a fill stores the value only if the version is
//! unchanged, an invalidation replaces the version and drops the value. Versions are random,
//! never counters, so an entry that is evicted and made again never reuses a version a fill
//! or a near copy could still hold.
//!
//! **Membership.** A monitor checks every server every [`RingOptions::check_interval`] with a
//! `PING` bounded by [`RingOptions::timeout`]; a server that fails a check, or any command,
//! leaves the ring at once. A server that answers again is flushed first (it missed the
//! invalidations sent while it was out), then receives invalidations but no reads for two
//! check intervals, so every web node's monitor has flushed it and sends it invalidations
//! before any reads it; then it rejoins. Invalidations go to every server in service, not
//! only the key's owner, so a web node whose view of the ring differs from another's for a
//! moment still invalidates the copy the other one reads.

use async_trait::async_trait;
use bytes::Bytes;
use crescendo_cache::{Cache, CacheError, Lookup, UNKNOWN_FENCE, stable_hash};
use crescendo_telemetry::names;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

const LIVE: u8 = 0;
const WARMING: u8 = 1;
const DOWN: u8 = 2;

/// Where the highest write position each server has seen is kept.
const FENCE_KEY: &str = "c|fence";

/// How long a version without a value lives (an entry that is invalidated, or looked up and
/// not yet filled).
const STUB_TTL: Duration = Duration::from_secs(120);

/// How long a load lease holds: longer than a load takes, short enough that readers waiting
/// on a loader that died soon load themselves.
const LOAD_LEASE: Duration = Duration::from_millis(500);

/// Settings of a [`RedisCache`].
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// The servers, `redis://host:port` each. They must hold nothing but this cache: a server
    /// that rejoins the ring is flushed.
    pub urls: Vec<String>,
    /// Points per server on the ring.
    pub vnodes: u32,
    /// Bound on every command and check; a server that takes longer leaves the ring.
    pub timeout: Duration,
    /// How often every server is checked.
    pub check_interval: Duration,
}

impl RingOptions {
    /// Defaults for `urls`: 160 points per server, 500 ms time-out, checks every 200 ms (so a
    /// server that stops answering leaves within 0.7 s).
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            vnodes: 160,
            timeout: Duration::from_millis(500),
            check_interval: Duration::from_millis(200),
        }
    }
}

struct Node {
    /// `host:port`, the node's name on the ring and in metrics.
    name: String,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    state: AtomicU8,
    /// When a warming node starts taking reads.
    live_at: Mutex<Instant>,
    member: metrics::Gauge,
    evicted: metrics::Gauge,
}

struct Scripts {
    lookup: redis::Script,
    fill: redis::Script,
    invalidate: redis::Script,
    versions: redis::Script,
    release: redis::Script,
}

struct Ring {
    nodes: Vec<Node>,
    /// (point, node index), sorted by point.
    points: Vec<(u64, usize)>,
    scripts: Scripts,
    timeout: Duration,
    check_interval: Duration,
    /// This process's name in load leases: a lease it holds already is its own, and it
    /// loads rather than waiting for itself.
    token: u64,
}

/// The `Cache` seam on a ring of Redis servers; see the module docs.
#[derive(Clone)]
pub struct RedisCache {
    ring: Arc<Ring>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("members", &self.members())
            .finish()
    }
}

/// Whether an error means the server is out of reach (rather than a bad command).
fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

fn entry_key(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 2);
    k.push_str("c:");
    k.push_str(key);
    k
}

/// The key of an entry's load lease (its value: `TOKEN:VERSION`, the holder's lease token and
/// the version it loads).
fn lease_key(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 3);
    k.push_str("cl:");
    k.push_str(key);
    k
}

fn new_version() -> u64 {
    // never 0, which means "no version"
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }) | 1
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl Ring {
    /// The node that owns `key` now: the first in service clockwise from its hash.
    fn owner(&self, key: &str) -> Option<usize> {
        let h = stable_hash(key.as_bytes());
        let start = self.points.partition_point(|p| p.0 < h);
        let n = self.points.len();
        (0..n)
            .map(|i| self.points[(start + i) % n].1)
            .find(|&i| self.nodes[i].state.load(Ordering::Acquire) == LIVE)
    }

    fn conn(&self, i: usize) -> Option<MultiplexedConnection> {
        self.nodes[i]
            .conn
            .lock()
            .expect("conn lock is never poisoned")
            .clone()
    }

    /// Takes node `i` out of the ring (it is flushed before it comes back).
    fn leave(&self, i: usize, why: &str) {
        let node = &self.nodes[i];
        if node.state.swap(DOWN, Ordering::AcqRel) != DOWN {
            *node.conn.lock().expect("conn lock is never poisoned") = None;
            node.member.set(0.0);
            metrics::counter!(names::CACHE_RING_CHANGES, "node" => node.name.clone(), "event" => "leave").increment(1);
            tracing::warn!(node = %node.name, reason = why, "cache server left the ring; its keys go to the others");
        }
    }

    /// Runs `op` on node `i` within the time-out; a node that cannot be reached leaves.
    async fn on<T, F, Fut>(&self, i: usize, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.conn(i) else {
            return Err(CacheError::Unavailable(format!(
                "{} is out of the ring",
                self.nodes[i].name
            )));
        };
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if unreachable(&e) {
                    self.leave(i, &e.to_string());
                }
                Err(CacheError::Unavailable(format!(
                    "{}: {e}",
                    self.nodes[i].name
                )))
            }
            Err(_) => {
                self.leave(i, "timed out");
                Err(CacheError::Unavailable(format!(
                    "{}: timed out",
                    self.nodes[i].name
                )))
            }
        }
    }

    async fn connect(&self, i: usize) -> Option<MultiplexedConnection> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match tokio::time::timeout(
            self.timeout,
            self.nodes[i]
                .client
                .get_multiplexed_async_connection_with_config(&cfg),
        )
        .await
        {
            Ok(Ok(c)) => Some(c),
            _ => None,
        }
    }

    /// One check of node `i`.
    async fn check(&self, i: usize, read_info: bool) {
        let node = &self.nodes[i];
        match node.state.load(Ordering::Acquire) {
            DOWN => {
                let Some(mut conn) = self.connect(i).await else {
                    return;
                };
                let flushed = tokio::time::timeout(
                    self.timeout,
                    redis::cmd("FLUSHALL").query_async::<()>(&mut conn),
                )
                .await;
                if !matches!(flushed, Ok(Ok(()))) {
                    return;
                }
                *node.live_at.lock().expect("live_at lock is never poisoned") =
                    Instant::now() + self.check_interval * 2;
                *node.conn.lock().expect("conn lock is never poisoned") = Some(conn);
                node.state.store(WARMING, Ordering::Release);
                tracing::info!(node = %node.name, "cache server answers again; flushed it, it takes invalidations now and reads shortly");
            }
            state => {
                let pinged = self
                    .on(i, |mut c| async move {
                        redis::cmd("PING").query_async::<String>(&mut c).await
                    })
                    .await;
                if pinged.is_err() {
                    return;
                }
                if state == WARMING
                    && Instant::now()
                        >= *node.live_at.lock().expect("live_at lock is never poisoned")
                {
                    node.state.store(LIVE, Ordering::Release);
                    node.member.set(1.0);
                    metrics::counter!(names::CACHE_RING_CHANGES, "node" => node.name.clone(), "event" => "join").increment(1);
                    tracing::info!(node = %node.name, "cache server rejoined the ring");
                }
                if read_info
                    && let Ok(info) = self
                        .on(i, |mut c| async move {
                            redis::cmd("INFO")
                                .arg("stats")
                                .query_async::<String>(&mut c)
                                .await
                        })
                        .await
                    && let Some(n) = info
                        .lines()
                        .find_map(|l| l.strip_prefix("evicted_keys:"))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                {
                    node.evicted.set(n);
                }
            }
        }
    }
}

/// Checks every node until the cache is dropped.
async fn monitor(ring: Weak<Ring>, interval: Duration) {
    let mut round: u64 = 0;
    loop {
        tokio::time::sleep(interval).await;
        let Some(ring) = ring.upgrade() else { return };
        round += 1;
        // evictions change slowly: read them about every 5 s
        let read_info = round.is_multiple_of((5_000 / ms(interval)).max(1));
        join_all((0..ring.nodes.len()).map(|i| ring.check(i, read_info))).await;
    }
}

impl RedisCache {
    /// A ring over `opts.urls`. Servers that answer join at once; the others join when they
    /// answer (after a flush). Starts the monitor on the current Tokio runtime.
    ///
    /// # Errors
    /// No servers, or a malformed URL.
    pub async fn connect(opts: &RingOptions) -> Result<Self, CacheError> {
        if opts.urls.is_empty() {
            return Err(CacheError::Unavailable(
                "no cache servers configured".into(),
            ));
        }
        let mut nodes = Vec::with_capacity(opts.urls.len());
        for url in &opts.urls {
            let client = redis::Client::open(url.as_str())
                .map_err(|e| CacheError::Unavailable(format!("{url}: {e}")))?;
            let name = url
                .trim_start_matches("redis://")
                .trim_end_matches('/')
                .to_string();
            nodes.push(Node {
                member: metrics::gauge!(names::CACHE_RING_MEMBER, "node" => name.clone()),
                evicted: metrics::gauge!(names::CACHE_SERVER_EVICTED, "node" => name.clone()),
                name,
                client,
                conn: Mutex::new(None),
                state: AtomicU8::new(DOWN),
                live_at: Mutex::new(Instant::now()),
            });
        }
        let mut points = Vec::with_capacity(nodes.len() * opts.vnodes as usize);
        for (i, n) in nodes.iter().enumerate() {
            for v in 0..opts.vnodes.max(1) {
                points.push((stable_hash(format!("{}#{v}", n.name).as_bytes()), i));
            }
        }
        points.sort_unstable();
        let ring = Arc::new(Ring {
            nodes,
            points,
            scripts: Scripts {
                lookup: redis::Script::new(LOOKUP),
                fill: redis::Script::new(FILL),
                invalidate: redis::Script::new(INVALIDATE),
                versions: redis::Script::new(VERSIONS),
                release: redis::Script::new(RELEASE),
            },
            timeout: opts.timeout,
            check_interval: opts.check_interval,
            token: new_version(),
        });
        join_all((0..ring.nodes.len()).map(|i| {
            let ring = Arc::clone(&ring);
            async move {
                let node = &ring.nodes[i];
                match ring.connect(i).await {
                    Some(conn) => {
                        *node.conn.lock().expect("conn lock is never poisoned") = Some(conn);
                        node.state.store(LIVE, Ordering::Release);
                        node.member.set(1.0);
                    }
                    None => {
                        node.member.set(0.0);
                        tracing::warn!(node = %node.name, "cache server does not answer; it joins the ring when it does");
                    }
                }
            }
        }))
        .await;
        tokio::spawn(monitor(Arc::downgrade(&ring), opts.check_interval));
        Ok(Self { ring })
    }

    /// Each server and whether it is in the ring (taking reads) now.
    pub fn members(&self) -> Vec<(String, bool)> {
        self.ring
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.state.load(Ordering::Acquire) == LIVE))
            .collect()
    }

    /// The server that owns `key` now, if any is in the ring.
    pub fn owner_of(&self, key: &str) -> Option<String> {
        self.ring
            .owner(key)
            .map(|i| self.ring.nodes[i].name.clone())
    }
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

/// KEYS: lease key. ARGV: version, the caller's lease token. Ends the caller's lease for
/// that version.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[2] .. ':' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
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

/// KEYS: entries. Returns each entry's version, '0' when absent.
const VERSIONS: &str = r"
local out = {}
for i, k in ipairs(KEYS) do out[i] = redis.call('HGET', k, 'v') or '0' end
return out
";

#[async_trait]
impl Cache for RedisCache {
    fn versioned(&self) -> bool {
        true
    }

    async fn lookup(&self, key: &str, known: u64) -> Result<Lookup, CacheError> {
        let ring = &self.ring;
        let i = ring
            .owner(key)
            .ok_or_else(|| CacheError::Unavailable("no cache server is in the ring".into()))?;
        let reply: Vec<Option<Vec<u8>>> = ring
            .on(i, |mut c| async move {
                ring.scripts
                    .lookup
                    .key(entry_key(key))
                    .key(FENCE_KEY)
                    .key(lease_key(key))
                    .arg(new_version())
                    .arg(known)
                    .arg(ms(STUB_TTL))
                    .arg(ms(LOAD_LEASE))
                    .arg(ring.token)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let field = |n: usize| reply.get(n).cloned().flatten();
        let version = field(0)
            .as_deref()
            .and_then(parse_u64)
            .ok_or_else(|| CacheError::Decode(format!("{key}: no version")))?;
        let fence = field(1)
            .as_deref()
            .and_then(parse_u64)
            .unwrap_or(UNKNOWN_FENCE);
        let wait = field(2).as_deref() == Some(b"1");
        Ok(Lookup {
            version,
            fence,
            value: field(3).map(Bytes::from),
            wait,
        })
    }

    async fn fill(
        &self,
        key: &str,
        version: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let ring = &self.ring;
        let i = ring
            .owner(key)
            .ok_or_else(|| CacheError::Unavailable("no cache server is in the ring".into()))?;
        ring.on(i, |mut c| async move {
            ring.scripts
                .fill
                .key(entry_key(key))
                .key(lease_key(key))
                .arg(version)
                .arg(value.as_ref())
                .arg(ms(ttl))
                .arg(ring.token)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn release(&self, key: &str, version: u64) -> Result<(), CacheError> {
        let ring = &self.ring;
        let i = ring
            .owner(key)
            .ok_or_else(|| CacheError::Unavailable("no cache server is in the ring".into()))?;
        ring.on(i, |mut c| async move {
            ring.scripts
                .release
                .key(lease_key(key))
                .arg(version)
                .arg(ring.token)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn invalidate(&self, keys: &[String], position: u64) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ring = &self.ring;
        let targets: Vec<usize> = (0..ring.nodes.len())
            .filter(|&i| ring.nodes[i].state.load(Ordering::Acquire) != DOWN)
            .collect();
        // Every server in service, so whichever one any web node reads a key from is
        // invalidated. A server that fails here has left the ring and is flushed before it
        // returns, so no reader can see what it still holds.
        join_all(targets.into_iter().map(|i| {
            ring.on(i, move |mut c| async move {
                let mut inv = ring.scripts.invalidate.prepare_invoke();
                for k in keys {
                    inv.key(entry_key(k));
                }
                for k in keys {
                    inv.key(lease_key(k));
                }
                inv.key(FENCE_KEY).arg(position).arg(ms(STUB_TTL));
                for _ in keys {
                    inv.arg(new_version());
                }
                inv.invoke_async::<i64>(&mut c).await
            })
        }))
        .await;
        Ok(())
    }

    async fn versions(&self, keys: &[&str]) -> Result<Vec<u64>, CacheError> {
        let ring = &self.ring;
        let mut by_node: HashMap<usize, Vec<usize>> = HashMap::new();
        for (n, k) in keys.iter().enumerate() {
            if let Some(i) = ring.owner(k) {
                by_node.entry(i).or_default().push(n);
            }
        }
        let mut out = vec![0u64; keys.len()];
        let replies = join_all(by_node.into_iter().map(|(i, idx)| async move {
            let got = ring
                .on(i, |mut c| {
                    let mut inv = ring.scripts.versions.prepare_invoke();
                    for &n in &idx {
                        inv.key(entry_key(keys[n]));
                    }
                    async move { inv.invoke_async::<Vec<Vec<u8>>>(&mut c).await }
                })
                .await;
            (idx, got)
        }))
        .await;
        for (idx, got) in replies {
            // a server out of reach leaves its keys at 0: never current
            if let Ok(versions) = got {
                for (n, v) in idx.into_iter().zip(versions) {
                    out[n] = parse_u64(&v).unwrap_or(0);
                }
            }
        }
        Ok(out)
    }
}
