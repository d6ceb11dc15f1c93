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
//!   than `max_lag`. It is back at the first check that finds it healthy.
//! - **which servers are out**: a check that gets no answer in time (or an error) tells a
//!   dead server from a busy one by opening a plain connection to its port. Refused (or any
//!   other immediate failure): the server is gone and out at once, so a killed server
//!   leaves within one check. Accepted, or not even that in time: the server is alive but
//!   slow, which on a loaded machine is no reason to refuse the writes or reads it would
//!   still serve; it is out only after [`MISSED_CHECKS_DOWN`] such checks in a row. Any
//!   answered check resets the count. A probe a check stopped waiting for is left running
//!   and waited on by the next check, so a slow answer still counts when it comes. A query
//!   that fails on a replica takes it out at once (the read is repeated on the primary).
//!
//! A read goes, round-robin, to a readable replica that has replayed the request's fence
//! (see `crescendo_store::fence`), else to the primary; with stale reads on, to a replica
//! whatever its lag while the primary cannot be reached (see [`stale`]).

use crescendo_telemetry::names;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub mod stale;

/// Gauge of a replica's replication lag in seconds; label `node`.
pub const REPLICA_LAG_SECONDS: &str = "crescendo_db_replica_lag_seconds";
/// Gauge of a replica's replication lag in bytes of WAL; label `node`.
pub const REPLICA_LAG_BYTES: &str = "crescendo_db_replica_lag_bytes";
/// Gauge, 1 while a replica receives reads; label `node`.
pub const REPLICA_READABLE: &str = "crescendo_db_replica_readable";

/// Checks in a row a server may miss while its port still accepts connections (alive but
/// busy) before it is taken out. A server whose port refuses them is out at the first.
pub const MISSED_CHECKS_DOWN: u32 = 3;

/// What one check heard from a server.
#[derive(Clone, Copy, Debug)]
enum Heard {
    /// An answer: (in recovery, WAL position).
    Answer(bool, i64),
    /// No answer in time, but its port accepts connections (or takes too long to say):
    /// alive and busy.
    Late,
    /// No answer, and its port refuses connections: the server is gone.
    Gone,
}

impl Heard {
    fn answer(self) -> Option<(bool, i64)> {
        match self {
            Self::Answer(in_recovery, lsn) => Some((in_recovery, lsn)),
            Self::Late | Self::Gone => None,
        }
    }
}

/// Where a plain connect reaches a server, to tell a dead one (refused) from a busy one.
#[derive(Clone, Debug)]
enum Reach {
    /// Host and port.
    Tcp(String, u16),
    /// A Unix socket's path.
    Unix(String),
}

impl Reach {
    /// Where `url` connects, as sqlx reads it; `None` if it cannot be read.
    fn of(url: &str) -> Option<Self> {
        let opts: PgConnectOptions = url.parse().ok()?;
        let (host, port) = (opts.get_host(), opts.get_port());
        Some(match opts.get_socket() {
            Some(dir) => Self::Unix(format!("{}/.s.PGSQL.{port}", dir.display())),
            None if host.starts_with('/') => Self::Unix(format!("{host}/.s.PGSQL.{port}")),
            None => Self::Tcp(host.to_string(), port),
        })
    }

    /// Whether the server's port takes a connection: `false` when the connect fails
    /// (refused, reset, no such address); a connect that takes longer than `limit` counts
    /// as taken, since only a loaded machine or network is that slow to refuse.
    async fn accepts(&self, limit: Duration) -> bool {
        let connect = async {
            match self {
                Self::Tcp(host, port) => tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .is_ok(),
                Self::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
            }
        };
        tokio::time::timeout(limit, connect).await.unwrap_or(true)
    }
}

/// How many check time-outs a probe may take in all: one that a check stops waiting for
/// goes on in the background, and the next check waits on it instead of starting another.
/// Abandoning it would close its connection, and a connection that takes longer to open
/// than a check waits (a loaded machine; the password exchange) would never open.
const PROBE_PATIENCE: u32 = 10;

/// A running probe: (in recovery, WAL position) if the server answered.
type Probe = tokio::task::JoinHandle<Option<(bool, i64)>>;

/// Asks a server for its role and WAL position, giving up after `patience`.
async fn ask(probe: PgPool, patience: Duration) -> Option<(bool, i64)> {
    let q = sqlx::query_as::<_, (bool, i64)>(
        "SELECT pg_is_in_recovery(),
                (CASE WHEN pg_is_in_recovery() THEN COALESCE(pg_last_wal_replay_lsn(), '0/0')
                      ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint",
    );
    tokio::time::timeout(patience, q.fetch_one(&probe))
        .await
        .ok()
        .and_then(Result::ok)
}

/// Waits up to `limit` for `n`'s answer (to the probe an earlier check left running, if
/// any); without one, tells by a connect to its port whether it is late or gone.
async fn hear(n: &Node, limit: Duration) -> Heard {
    let pending = n
        .pending
        .lock()
        .expect("probe lock is never poisoned")
        .take();
    let mut probe =
        pending.unwrap_or_else(|| tokio::spawn(ask(n.probe.clone(), limit * PROBE_PATIENCE)));
    let answer = match tokio::time::timeout(limit, &mut probe).await {
        Ok(answer) => answer.ok().flatten(),
        Err(_) => {
            *n.pending.lock().expect("probe lock is never poisoned") = Some(probe);
            None
        }
    };
    match (answer, &n.reach) {
        (Some((in_recovery, lsn)), _) => Heard::Answer(in_recovery, lsn),
        (None, Some(reach)) if reach.accepts(limit).await => Heard::Late,
        (None, _) => Heard::Gone,
    }
}

/// One PostgreSQL server.
pub(crate) struct Node {
    /// `host:port`, for logs and metric labels.
    pub name: String,
    pub pool: PgPool,
    /// A one-connection pool for the monitor, so a busy main pool never fails a check.
    probe: PgPool,
    /// Where a plain connect reaches it, when a check gets no answer.
    reach: Option<Reach>,
    /// The probe a check stopped waiting for, still running (see [`PROBE_PATIENCE`]).
    pending: Mutex<Option<Probe>>,
    up: AtomicBool,
    /// Checks missed in a row while its port accepted connections (see [`Heard::Late`]).
    misses: AtomicU32,
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
        probe_patience: Duration,
    ) -> Result<Self, sqlx::Error> {
        let name = url_host_port(url);
        let pool = pool_opts.connect_lazy(url)?;
        let probe = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(probe_patience)
            .test_before_acquire(false)
            .connect_lazy(url)?;
        Ok(Self {
            pool,
            probe,
            reach: Reach::of(url),
            pending: Mutex::new(None),
            up: AtomicBool::new(true),
            misses: AtomicU32::new(0),
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
    /// Serve reads from a replica, marked stale, while the primary cannot be reached.
    pub serve_stale_reads: bool,
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
    /// Whether reads go to a replica, marked stale, while the primary cannot be reached.
    stale_reads: bool,
    /// When the cluster was made: the origin of `primary_heard_ms`.
    started: Instant,
    /// When a check last heard the primary answer, in ms after `started`.
    primary_heard_ms: AtomicU64,
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
                Node::new(url, pool, probe_timeout * PROBE_PATIENCE).map(Arc::new)
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
            stale_reads: opts.serve_stale_reads,
            started: Instant::now(),
            primary_heard_ms: AtomicU64::new(0),
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
            let n = Arc::clone(n);
            probes.spawn(async move { (i, hear(&n, limit).await) });
        }
        let mut heard = vec![Heard::Gone; self.nodes.len()];
        while let Some(joined) = probes.join_next().await {
            if let Ok((i, h)) = joined {
                heard[i] = h;
            }
        }
        let answers: Vec<Option<(bool, i64)>> = heard.iter().map(|h| h.answer()).collect();
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
        if head.is_some() {
            self.heard_primary(now);
        }

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
                let gone = matches!(heard[i], Heard::Gone);
                if !Self::missed(n, i == primary, gone) && i != primary {
                    // a late replica's last known position ages as the primary moves on
                    let last = n.lsn.load(Ordering::Acquire);
                    self.measure(n, last, (&samples, newest, keep), now);
                }
                continue;
            };
            n.misses.store(0, Ordering::Release);
            let lsn = lsn as u64;
            n.in_recovery.store(in_recovery, Ordering::Release);
            n.lsn.store(lsn, Ordering::Release);
            if i == primary {
                n.lag_ms.store(0, Ordering::Release);
                n.up.store(true, Ordering::Release);
                continue;
            }
            if !n.up.swap(true, Ordering::AcqRel) {
                tracing::info!(node = %n.name, "database server answering");
            }
            self.measure(n, lsn, (&samples, newest, keep), now);
        }
        self.gauge_staleness();
    }

    /// Sets replica `n`'s lag at WAL position `lsn` from the primary's positions (samples,
    /// the newest, how long they are kept), and its gauges.
    fn measure(
        &self,
        n: &Node,
        lsn: u64,
        (samples, newest, keep): (&VecDeque<(Instant, u64)>, u64, Duration),
        now: Instant,
    ) {
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

    /// Counts a check `n` did not answer, and takes it out if it is `gone` or has now missed
    /// [`MISSED_CHECKS_DOWN`] in a row; `true` if it is out.
    fn missed(n: &Node, is_primary: bool, gone: bool) -> bool {
        let misses = n.misses.load(Ordering::Acquire).saturating_add(1);
        n.misses.store(misses, Ordering::Release);
        if !gone && misses < MISSED_CHECKS_DOWN {
            tracing::debug!(node = %n.name, misses, "database server answered late; it stays in");
            return false;
        }
        n.mark_down();
        if !is_primary {
            metrics::gauge!(REPLICA_READABLE, "node" => n.name.clone()).set(0.0);
        }
        true
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

/// Checks the cluster every interval until it is dropped, the first time one interval after
/// start: the store's owner checks at start ([`crate::PgStore::check_servers`]), so that a
/// check never races the monitor's first one.
async fn monitor(cluster: Weak<Cluster>) {
    let interval = match cluster.upgrade() {
        Some(c) => c.check_interval,
        None => return,
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        c.check().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Reach, url_host_port};

    #[test]
    fn a_server_is_reached_where_its_url_connects() {
        let tcp = Reach::of("postgres://u:p@db.example:6000/x?sslmode=disable");
        assert!(
            matches!(&tcp, Some(Reach::Tcp(h, 6000)) if h == "db.example"),
            "{tcp:?}"
        );
        let socket = Reach::of("postgres://u@%2Ftmp%2Fpg:5433/x");
        assert!(
            matches!(&socket, Some(Reach::Unix(p)) if p == "/tmp/pg/.s.PGSQL.5433"),
            "{socket:?}"
        );
    }

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
