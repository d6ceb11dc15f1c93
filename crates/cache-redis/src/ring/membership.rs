//! Ring membership: commands bounded by the time-out, servers leaving on failure, and the
//! monitor that checks every server and brings back the ones that answer again (flushed,
//! warming, then live).

use super::{DOWN, LIVE, Ring, WARMING, ms, unreachable};
use crescendo_cache::CacheError;
use crescendo_telemetry::names;
use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

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

    /// Runs `op` on node `i` within the time-out; a node that cannot be reached leaves.
    pub(super) async fn on<T, F, Fut>(&self, i: usize, op: F) -> Result<T, CacheError>
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

    /// A new connection to node `i`, within the time-out.
    pub(super) async fn connect(&self, i: usize) -> Option<MultiplexedConnection> {
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
