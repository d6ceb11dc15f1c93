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
//! cached). Each operation of [`Cache`](crescendo_cache::Cache) is one Lua script, so it is
//! atomic on its server: a lookup creates the version when absent, a fill stores the value
//! only if the version is unchanged, an invalidation replaces the version and drops the
//! value. Versions are random, never counters, so an entry that is evicted and made again
//! never reuses a version a fill or a near copy could still hold.
//!
//! **Membership.** A monitor checks every server every [`RingOptions::check_interval`] with a
//! `PING` bounded by [`RingOptions::timeout`]. A busy server is not a dead one, so a server
//! leaves the ring only when it is gone or may hold a stale copy:
//!
//! - when a command or check finds its connection refused or dropped (at once);
//! - when an invalidation to it fails in any way, a time-out included (at once): it may
//!   still hold what the invalidation was to remove;
//! - when it misses `MISSED_CHECKS_LEAVE` (3) checks in a row by answering late or with
//!   an error.
//!
//! A lookup, fill, lease release or version check that times out or fails only falls back
//! (the caller loads from the store, or skips the fill) and leaves the server in. An
//! invalidation that timed out on a server that is only slow still reaches it: it waits in
//! the connection and runs when the server resumes, before anything sent to it later. A
//! server that answers again is flushed first (it missed the
//! invalidations sent while it was out), then receives invalidations but no reads for two
//! check intervals, so every web node's monitor has flushed it and sends it invalidations
//! before any reads it; then it rejoins. Invalidations go to every server in service, not
//! only the key's owner, so a web node whose view of the ring differs from another's for a
//! moment still invalidates the copy the other one reads.

//!
//! **Change reports.** Each web node also keeps, per server, a connection on which the
//! server reports every change to a `c:` key (Redis client tracking, broadcast mode), so a
//! near copy can be served without asking while every report channel has stayed up since
//! the copy was made; see `tracking` for the channel and the trust rules, and
//! `crescendo_cache`'s `ReadThrough` for which reads may use them.
//!
//! Submodules: `scripts` (the Lua scripts and the keys they touch), `commands` (the `Cache`
//! operations), `membership` (checks, leaving and rejoining) and `tracking` (change reports).

mod commands;
mod membership;
mod scripts;
mod tracking;

use crescendo_cache::{CacheError, stable_hash};
use crescendo_telemetry::names;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use scripts::Scripts;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A node in the ring: it takes reads and invalidations.
const LIVE: u8 = 0;
/// A node back from [`DOWN`], flushed: it takes invalidations, and reads once `live_at` comes.
const WARMING: u8 = 1;
/// A node out of the ring: it takes nothing until a check finds it answering and flushes it.
const DOWN: u8 = 2;

/// Settings of a [`RedisCache`].
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// The servers, `redis://host:port` each. They must hold nothing but this cache: a server
    /// that rejoins the ring is flushed.
    pub urls: Vec<String>,
    /// Points per server on the ring.
    pub vnodes: u32,
    /// Bound on every command and check. A lookup or fill that takes longer falls back; an
    /// invalidation that does, or three checks in a row that do, take the server out.
    pub timeout: Duration,
    /// How often every server is checked.
    pub check_interval: Duration,
    /// Whether each server reports changes to this process (client tracking), so near
    /// copies may be served without a version check; see `tracking`.
    pub tracking: bool,
}

impl RingOptions {
    /// Defaults for `urls`: 160 points per server, 500 ms time-out, checks every 200 ms (so a
    /// server that refuses connections leaves within 0.2 s of the next check, and one that
    /// stops answering within about 2.1 s, or at the first invalidation it misses).
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            vnodes: 160,
            timeout: Duration::from_millis(500),
            check_interval: Duration::from_millis(200),
            tracking: true,
        }
    }
}

struct Node {
    /// `host:port`, the node's name on the ring and in metrics.
    name: String,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    state: AtomicU8,
    /// Checks missed in a row by answering late or with an error (see
    /// [`membership::MISSED_CHECKS_LEAVE`]).
    misses: AtomicU32,
    /// When a warming node starts taking reads.
    live_at: Mutex<Instant>,
    member: metrics::Gauge,
    evicted: metrics::Gauge,
    /// Its change-report connection (see `tracking`).
    channel: tracking::Channel,
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
    /// Change reports and the trust they give near copies.
    tracking: tracking::Tracking,
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

/// `d` in whole milliseconds, at least 1 (Redis refuses a TTL of 0).
fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// A random entry version (or lease token).
fn new_version() -> u64 {
    // never 0, which means "no version"
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }) | 1
}

/// A decimal number sent by Redis.
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

    /// The node that owns `key`, or the error every command gives when the ring is empty.
    fn owner_or_unavailable(&self, key: &str) -> Result<usize, CacheError> {
        self.owner(key)
            .ok_or_else(|| CacheError::Unavailable("no cache server is in the ring".into()))
    }

    /// Node `i`'s connection, while it is in service.
    fn conn(&self, i: usize) -> Option<MultiplexedConnection> {
        self.nodes[i]
            .conn
            .lock()
            .expect("conn lock is never poisoned")
            .clone()
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
            // a server is named by its address: never by the credentials in its URL
            let name = url.trim_start_matches("redis://").trim_end_matches('/');
            let name = name.rsplit_once('@').map_or(name, |(_, a)| a).to_string();
            let client = redis::Client::open(url.as_str())
                .map_err(|e| CacheError::Unavailable(format!("{name}: {e}")))?;
            nodes.push(Node {
                member: metrics::gauge!(names::CACHE_RING_MEMBER, "node" => name.clone()),
                evicted: metrics::gauge!(names::CACHE_SERVER_EVICTED, "node" => name.clone()),
                name,
                client,
                conn: Mutex::new(None),
                state: AtomicU8::new(DOWN),
                misses: AtomicU32::new(0),
                live_at: Mutex::new(Instant::now()),
                channel: tracking::Channel::default(),
            });
        }
        let mut points = Vec::with_capacity(nodes.len() * opts.vnodes as usize);
        for (i, n) in nodes.iter().enumerate() {
            for v in 0..opts.vnodes.max(1) {
                points.push((stable_hash(format!("{}#{v}", n.name).as_bytes()), i));
            }
        }
        points.sort_unstable();
        let token = new_version();
        let ring = Arc::new(Ring {
            tracking: tracking::Tracking::new(opts.tracking, nodes.len(), token),
            nodes,
            points,
            scripts: Scripts::new(),
            timeout: opts.timeout,
            check_interval: opts.check_interval,
            token,
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
                        ring.track(i).await;
                    }
                    None => {
                        node.member.set(0.0);
                        tracing::warn!(node = %node.name, "cache server does not answer; it joins the ring when it does");
                    }
                }
            }
        }))
        .await;
        tokio::spawn(membership::monitor(
            Arc::downgrade(&ring),
            opts.check_interval,
        ));
        if opts.tracking {
            tokio::spawn(tracking::sync(Arc::downgrade(&ring)));
        }
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
