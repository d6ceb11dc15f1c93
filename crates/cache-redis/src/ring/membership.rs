//! Ring membership: commands bounded by the time-out, servers leaving when a failure means
//! they may hold a stale copy or are gone, and the monitor that checks every server and
//! brings back the ones that answer again (flushed, warming, then live).

use super::{DOWN, LIVE, Ring, WARMING, ms, unreachable};
use crescendo_cache::CacheError;
use crescendo_telemetry::names;
use futures_util::future::join_all;
use redis::RedisError;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Checks in a row a server may miss by answering late (or with an error) before it leaves
/// the ring; one that refuses or drops the connection leaves at once.
pub(super) const MISSED_CHECKS_LEAVE: u32 = 3;

/// What a failed command means for its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OnFailure {
    /// The command had to reach the server for correctness (an invalidation): any failure,
    /// a time-out included, takes the server out of the ring, to be flushed before it
    /// returns, since it may still hold what the command was to remove.
    Leave,
    /// Only the caller loses (a lookup falls back to the store; a fill, a lease release or a
    /// version check is skipped): a server that answers late or with an error stays, and
    /// leaves only when it cannot be reached at all (connection refused or dropped).
    Stay,
}

/// Why a command on a server did not succeed.
enum Fault {
    /// The server is out of the ring: there is no connection to send on.
    Out,
    /// The connection was refused or dropped: the server is gone.
    Gone(RedisError),
    /// No answer within the time-out.
    Late,
    /// An error reply (or any other error that leaves the connection up).
    Refused(RedisError),
}

impl Ring {
    /// Takes node `i` out of the ring (it is flushed before it comes back).
    fn leave(&self, i: usize, why: &str) {
        let node = &self.nodes[i];
        if node.state.swap(DOWN, Ordering::AcqRel) != DOWN {
            *node.conn.lock().expect("conn lock is never poisoned") = None;
            node.member.set(0.0);
            self.untrack_node(i);
            metrics::counter!(names::CACHE_RING_CHANGES, "node" => node.name.clone(), "event" => "leave").increment(1);
            tracing::warn!(node = %node.name, reason = why, "cache server left the ring; its keys go to the others");
        }
    }

    /// Runs `op` on node `i` within the time-out.
    async fn run<T, F, Fut>(&self, i: usize, op: F) -> Result<T, Fault>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let Some(conn) = self.conn(i) else {
            return Err(Fault::Out);
        };
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(Fault::Late),
            Ok(Err(e)) if unreachable(&e) => Err(Fault::Gone(e)),
            Ok(Err(e)) => Err(Fault::Refused(e)),
            Err(_) => Err(Fault::Late),
        }
    }

    /// Runs `op` on node `i` within the time-out. A node that cannot be reached leaves the
    /// ring; one that answers late or with an error leaves only if `on_failure` says so.
    /// Runs `op(i, connection)` on every server in service at once, each as [`Self::on`]
    /// with [`OnFailure::Leave`]: a server that fails leaves the ring and is flushed before
    /// it takes reads again, so no reader can see what it still holds.
    pub(super) async fn on_each_in_service<F, Fut>(&self, op: F)
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<i64>>,
    {
        let targets =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].state.load(Ordering::Acquire) != DOWN);
        let op = &op;
        join_all(targets.map(|i| self.on(i, OnFailure::Leave, op))).await;
    }

    pub(super) async fn on<T, F, Fut>(
        &self,
        i: usize,
        on_failure: OnFailure,
        op: F,
    ) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let name = &self.nodes[i].name;
        let why = match self.run(i, op).await {
            Ok(v) => return Ok(v),
            Err(Fault::Out) => {
                return Err(CacheError::Unavailable(format!(
                    "{name} is out of the ring"
                )));
            }
            Err(Fault::Gone(e)) => {
                self.leave(i, &e.to_string());
                return Err(CacheError::Unavailable(format!("{name}: {e}")));
            }
            Err(Fault::Late) => "timed out".to_string(),
            Err(Fault::Refused(e)) => e.to_string(),
        };
        if on_failure == OnFailure::Leave {
            self.leave(i, &why);
        }
        Err(CacheError::Unavailable(format!("{name}: {why}")))
    }

    /// A new connection to node `i`, within the time-out, on which the server has learnt the
    /// invalidation script. An invalidation that times out on a slow server then still runs
    /// there when it resumes; had the server not known the script, it would answer with an
    /// error that nobody is left to retry on.
    pub(super) async fn connect(&self, i: usize) -> Option<MultiplexedConnection> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connected = async {
            let mut conn = self.nodes[i]
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            self.scripts.invalidate.load_async(&mut conn).await?;
            Ok::<_, RedisError>(conn)
        };
        tokio::time::timeout(self.timeout, connected)
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// One check of node `i`.
    async fn check(self: &Arc<Self>, i: usize, read_info: bool) {
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
                node.misses.store(0, Ordering::Release);
                node.state.store(WARMING, Ordering::Release);
                tracing::info!(node = %node.name, "cache server answers again; flushed it, it takes invalidations now and reads shortly");
            }
            state => {
                let pinged = self
                    .run(i, |mut c| async move {
                        redis::cmd("PING").query_async::<String>(&mut c).await
                    })
                    .await;
                if !self.answered(i, pinged.map(|_| ())) {
                    return;
                }
                if !self.tracked(i) {
                    self.track(i).await;
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
                        .on(i, OnFailure::Stay, |mut c| async move {
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

impl Ring {
    /// Counts node `i`'s check: `true` if it answered. One that is gone leaves at once; one
    /// that answered late (or with an error) leaves after [`MISSED_CHECKS_LEAVE`] in a row.
    fn answered(&self, i: usize, pinged: Result<(), Fault>) -> bool {
        let node = &self.nodes[i];
        let why = match pinged {
            Ok(()) => {
                node.misses.store(0, Ordering::Release);
                return true;
            }
            Err(Fault::Out) => return false,
            Err(Fault::Gone(e)) => {
                self.leave(i, &e.to_string());
                return false;
            }
            Err(Fault::Late) => "timed out".to_string(),
            Err(Fault::Refused(e)) => e.to_string(),
        };
        let misses = node.misses.load(Ordering::Acquire).saturating_add(1);
        node.misses.store(misses, Ordering::Release);
        if misses >= MISSED_CHECKS_LEAVE {
            self.leave(
                i,
                &format!("{misses} checks in a row without an answer ({why})"),
            );
        } else {
            tracing::debug!(node = %node.name, misses, reason = %why, "cache server missed a check; it stays in the ring");
        }
        false
    }
}

/// Checks every node until the cache is dropped.
pub(super) async fn monitor(ring: Weak<Ring>, interval: Duration) {
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
