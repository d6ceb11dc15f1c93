//! A primary and its streaming replicas, and which of them serves each read.
//!
//! A monitor task asks every server, every `check_interval`, whether it is in recovery and
//! how far its WAL goes (the primary: written; a replica: replayed). From that it keeps:
//!
//! - **the primary**: the configured one while it answers as a primary; when it stops
//!   answering and another server answers as a primary (it was promoted), that one. So the
//!   web tier follows a failover without restarting.
//! - **each replica's lag**: in bytes, and in time, as how long ago the primary was first
//!   seen past the replica's replay position (samples of the primary's position are kept
//!   for this). A replica is *readable* while it answers, is in recovery, and lags no more
//!   than `max_lag`. One that stops answering is out at the next check (or at once, when a
//!   query on it fails); it is back at the first check that finds it healthy.
//!
//! A read goes, round-robin, to a readable replica that has replayed the request's fence
//! (see `crescendo_store::fence`), else to the primary.

use crescendo_telemetry::names;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Gauge of a replica's replication lag in seconds; label `node`.
pub const REPLICA_LAG_SECONDS: &str = "crescendo_db_replica_lag_seconds";
/// Gauge of a replica's replication lag in bytes of WAL; label `node`.
pub const REPLICA_LAG_BYTES: &str = "crescendo_db_replica_lag_bytes";
/// Gauge, 1 while a replica receives reads; label `node`.
pub const REPLICA_READABLE: &str = "crescendo_db_replica_readable";

/// One PostgreSQL server.
pub(crate) struct Node {
    /// `host:port`, for logs and metric labels.
    pub name: String,
    pub pool: PgPool,
    /// A one-connection pool for the monitor, so a busy main pool never fails a check.
    probe: PgPool,
    up: AtomicBool,
    in_recovery: AtomicBool,
    /// Replayed (replica) or written (primary) WAL position, as a byte offset.
    lsn: AtomicU64,
    lag_ms: AtomicU64,
    replica_reads: metrics::Counter,
    replica_checks: metrics::Counter,
    primary_reads: metrics::Counter,
    primary_writes: metrics::Counter,
}

impl Node {
    fn new(
        url: &str,
        pool_opts: PgPoolOptions,
        probe_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let name = url_host_port(url);
        let pool = pool_opts.connect_lazy(url)?;
        let probe = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(probe_timeout)
            .test_before_acquire(false)
            .connect_lazy(url)?;
        Ok(Self {
            pool,
            probe,
            up: AtomicBool::new(true),
            in_recovery: AtomicBool::new(false),
            lsn: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            replica_reads: metrics::counter!(names::DB_QUERIES, "role" => "replica", "op" => "read", "node" => name.clone()),
            replica_checks: metrics::counter!(names::DB_QUERIES, "role" => "replica", "op" => "check", "node" => name.clone()),
            primary_reads: metrics::counter!(names::DB_QUERIES, "role" => "primary", "op" => "read", "node" => name.clone()),
            primary_writes: metrics::counter!(names::DB_QUERIES, "role" => "primary", "op" => "write", "node" => name.clone()),
            name,
        })
    }

    /// Whether the last check (or query) found it answering.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Asks the replica whether it has replayed `fence` (one round trip), and remembers the
    /// position it reports. A replica that does not answer is taken out of rotation.
    pub async fn has_replayed(&self, fence: u64) -> bool {
        self.replica_checks.increment(1);
        crescendo_store::fence::note_query();
        let replayed = sqlx::query_scalar::<_, i64>(
            "SELECT (COALESCE(pg_last_wal_replay_lsn(), '0/0') - '0/0'::pg_lsn)::bigint",
        )
        .fetch_one(&self.pool)
        .await;
        match replayed {
            Ok(p) => {
                let p = p as u64;
                self.lsn.fetch_max(p, Ordering::AcqRel);
                p >= fence
            }
            Err(_) => {
                self.mark_down();
                false
            }
        }
    }

    /// Takes the node out of the read rotation until the next healthy check.
    pub fn mark_down(&self) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(node = %self.name, "database server not answering; reads go elsewhere");
        }
    }
}

/// `host:port` of a `postgres://user@host:port/db?…` URL (the whole URL if it has no `@`).
pub(crate) fn url_host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// How the cluster is reached and judged.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The servers: the first is the primary at start, the others its replicas.
    pub urls: Vec<String>,
    /// Most connections in each server's pool.
    pub max_connections: u32,
    /// How long a query waits for a connection before the store is "unavailable".
    pub acquire_timeout: Duration,
    /// A replica further behind than this gets no reads.
    pub max_replica_lag: Duration,
    /// How often every server is checked.
    pub check_interval: Duration,
}

pub(crate) struct Cluster {
    pub nodes: Vec<Arc<Node>>,
    primary: AtomicUsize,
    next: AtomicUsize,
    /// Every read must see at least this position: that of the last schema migration, so
    /// no replica is read before it has the tables.
    floor: AtomicU64,
    max_lag: Duration,
    check_interval: Duration,
    /// (when, the primary's WAL position then), oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Cluster {
    pub fn new(opts: &ClusterOptions) -> Result<Arc<Self>, sqlx::Error> {
        let probe_timeout =
            (opts.check_interval * 2).clamp(Duration::from_millis(100), Duration::from_millis(500));
        let nodes = opts
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let pool = PgPoolOptions::new()
                    .max_connections(opts.max_connections)
                    .acquire_timeout(opts.acquire_timeout)
                    // a replica's broken connection is caught by the read retry; the
                    // primary keeps the check, so a write never starts on a dead one
                    .test_before_acquire(i == 0);
                Node::new(url, pool, probe_timeout).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for n in nodes.iter().skip(1) {
            n.in_recovery.store(true, Ordering::Release);
            // not readable until a check has measured it
            n.up.store(false, Ordering::Release);
        }
        let cluster = Arc::new(Self {
            nodes,
            primary: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            floor: AtomicU64::new(0),
            max_lag: opts.max_replica_lag,
            check_interval: opts.check_interval,
            samples: Mutex::new(VecDeque::new()),
        });
        if cluster.nodes.len() > 1 {
            tokio::spawn(monitor(Arc::downgrade(&cluster)));
        }
        Ok(cluster)
    }

    /// How often the servers are checked.
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    pub fn has_replicas(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The server that takes writes now.
    pub fn primary(&self) -> &Arc<Node> {
        &self.nodes[self.primary.load(Ordering::Acquire)]
    }

    fn readable(&self, n: &Node, fence: u64) -> bool {
        n.up.load(Ordering::Acquire)
            && n.in_recovery.load(Ordering::Acquire)
            && n.lag_ms.load(Ordering::Acquire) <= self.max_lag.as_millis() as u64
            && n.lsn.load(Ordering::Acquire) >= fence
    }

    /// Makes every later read see `position` (after a schema change).
    pub fn raise_floor(&self, position: u64) {
        self.floor.fetch_max(position, Ordering::AcqRel);
    }

    /// A replica for a read that must see `fence`: one known to have replayed it, else one
    /// that says so when asked (a fence is usually younger than the last check); `None`:
    /// use the primary.
    pub async fn replica_for_read(&self, fence: u64) -> Option<&Arc<Node>> {
        if let Some(n) = self.replica_for(fence) {
            return Some(n);
        }
        if fence == u64::MAX {
            return None;
        }
        let n = self.replica_for(0)?;
        n.has_replayed(fence.max(self.floor.load(Ordering::Acquire)))
            .await
            .then_some(n)
    }

    /// A replica known to have replayed `fence`, round-robin.
    pub fn replica_for(&self, fence: u64) -> Option<&Arc<Node>> {
        let fence = fence.max(self.floor.load(Ordering::Acquire));
        let count = self.nodes.len();
        if count < 2 {
            return None;
        }
        let primary = self.primary.load(Ordering::Acquire);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|k| (start + k) % count)
            .filter(|&i| i != primary)
            .map(|i| &self.nodes[i])
            .find(|n| self.readable(n, fence))
    }

    /// Counts a read on `node` (as the primary's or a replica's).
    pub fn count_read(&self, node: &Node) {
        if std::ptr::eq(node, &**self.primary()) {
            node.primary_reads.increment(1);
        } else {
            node.replica_reads.increment(1);
        }
        crescendo_store::fence::note_query();
    }

    /// Counts a write (a transaction or statement) on the primary.
    pub fn count_write(&self) {
        self.primary().primary_writes.increment(1);
        crescendo_store::fence::note_query();
    }

    /// Checks every server once and updates roles, positions and lag.
    pub async fn check(&self) {
        let limit =
            (self.check_interval * 2).clamp(Duration::from_millis(100), Duration::from_millis(500));
        let mut probes = tokio::task::JoinSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let probe = n.probe.clone();
            probes.spawn(async move {
                let q = sqlx::query_as::<_, (bool, i64)>(
                    "SELECT pg_is_in_recovery(),
                            (CASE WHEN pg_is_in_recovery() THEN COALESCE(pg_last_wal_replay_lsn(), '0/0')
                                  ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint",
                );
                (i, tokio::time::timeout(limit, q.fetch_one(&probe)).await.ok().and_then(Result::ok))
            });
        }
        let mut answers: Vec<Option<(bool, i64)>> = vec![None; self.nodes.len()];
        while let Some(joined) = probes.join_next().await {
            if let Ok((i, answer)) = joined {
                answers[i] = answer;
            }
        }
        let now = Instant::now();

        // the primary: the current one while it answers as one, else one that does
        let current = self.primary.load(Ordering::Acquire);
        let is_primary = |i: usize| matches!(answers[i], Some((false, _)));
        if !is_primary(current)
            && let Some(new) = (0..self.nodes.len())
                .filter(|&i| is_primary(i))
                .max_by_key(|&i| answers[i].map_or(0, |a| a.1))
        {
            self.primary.store(new, Ordering::Release);
            tracing::warn!(from = %self.nodes[current].name, to = %self.nodes[new].name, "new primary");
        }
        let primary = self.primary.load(Ordering::Acquire);
        let head = answers[primary].map(|a| a.1 as u64);

        let mut samples = self.samples.lock().expect("samples lock is never poisoned");
        if let Some(head) = head
            && samples.back().is_none_or(|&(_, lsn)| lsn < head)
        {
            samples.push_back((now, head));
        }
        let keep = (self.max_lag * 4).max(Duration::from_secs(10));
        while samples.len() > 1
            && samples
                .front()
                .is_some_and(|&(t, _)| now.duration_since(t) > keep)
        {
            samples.pop_front();
        }
        let newest = samples.back().map_or(0, |&(_, lsn)| lsn);

        for (i, (n, answer)) in self.nodes.iter().zip(&answers).enumerate() {
            let Some((in_recovery, lsn)) = *answer else {
                n.mark_down();
                if i != primary {
                    metrics::gauge!(REPLICA_READABLE, "node" => n.name.clone()).set(0.0);
                }
                continue;
            };
            let lsn = lsn as u64;
            n.in_recovery.store(in_recovery, Ordering::Release);
            n.lsn.store(lsn, Ordering::Release);
            if i == primary {
                n.lag_ms.store(0, Ordering::Release);
                n.up.store(true, Ordering::Release);
                continue;
            }
            let lag = if lsn >= newest {
                Duration::ZERO
            } else {
                // how long ago the primary was first seen past this replica
                samples
                    .iter()
                    .find(|&&(_, p)| p > lsn)
                    .map_or(keep, |&(t, _)| now.duration_since(t))
            };
            n.lag_ms.store(lag.as_millis() as u64, Ordering::Release);
            if !n.up.swap(true, Ordering::AcqRel) {
                tracing::info!(node = %n.name, "database server answering");
            }
            metrics::gauge!(REPLICA_LAG_SECONDS, "node" => n.name.clone()).set(lag.as_secs_f64());
            metrics::gauge!(REPLICA_LAG_BYTES, "node" => n.name.clone())
                .set(newest.saturating_sub(lsn) as f64);
            let readable = self.readable(n, 0);
            metrics::gauge!(REPLICA_READABLE, "node" => n.name.clone()).set(if readable {
                1.0
            } else {
                0.0
            });
        }
    }

    /// Each server's view, for logs and tests: (name, primary?, readable?, lag).
    pub fn describe(&self) -> Vec<(String, bool, bool, Duration)> {
        let primary = self.primary.load(Ordering::Acquire);
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.name.clone(),
                    i == primary,
                    i != primary && self.readable(n, 0),
                    Duration::from_millis(n.lag_ms.load(Ordering::Acquire)),
                )
            })
            .collect()
    }
}

/// Checks the cluster every interval until it is dropped.
async fn monitor(cluster: Weak<Cluster>) {
    let interval = match cluster.upgrade() {
        Some(c) => c.check_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        c.check().await;
    }
}

#[cfg(test)]
mod tests {
    use super::url_host_port;

    #[test]
    fn names_come_from_urls() {
        assert_eq!(
            url_host_port("postgres://postgres@127.0.0.1:5432/crescendo"),
            "127.0.0.1:5432"
        );
        assert_eq!(
            url_host_port("postgres://u:p@db.example:6000/x?sslmode=disable"),
            "db.example:6000"
        );
        assert_eq!(url_host_port("postgres://localhost/x"), "localhost");
    }
}
