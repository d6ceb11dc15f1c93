//! The edge caches (a CDN in front of the balancer): which answers they may keep
//! ([`Shareable`]), and how a write purges what it changed from every one of them
//! ([`Edges`], [`App::purge_edges`], [`App::purge_edges_settled`]).
//!
//! An edge keeps an anonymous answer under the tokens of the cache keys it was made from
//! (`crescendo_cache::surrogate`). A write's purge is durable before the write is:
//! [`App::purging`] adds an `edge-purge` entry to the outbox in the write's own transaction,
//! born leased by its writer for `edge.purge_settle_ms` plus [`WRITER_MARGIN`], so no relay
//! publishes it while the writer is alive. After the commit, and after the write has
//! invalidated its keys in the cache tier, the writer purges the tokens on every edge at
//! once, then again once the write has settled (an edge that refetched in between from a node
//! whose near cache had not yet dropped the old entry is corrected then), on a task of its
//! own, and then removes the entry ([`Removals`] batches the deletes). If the writer dies
//! after the commit, or the settled purge fails, the entry's lease runs out and any node's
//! relay publishes it as an ordinary `edge-purge` job, which a worker sends (retried with
//! back-off while an edge is down). The usual write thus costs one insert in its own
//! transaction and a share of a batched delete, and nothing on the queue.

use crate::{App, now_ms};
use async_trait::async_trait;
use crescendo_store::StoreResult;
use crescendo_store::jobs::EdgePurge;
use crescendo_store::outbox::{self, PendingJob};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How much longer than `edge.purge_settle_ms` a write's outbox entry stays leased by its
/// writer: time for the settled purge (each edge bounded by its short time-out) and the
/// removal. A relay publishes the entry only after that, so only a writer that died or
/// failed makes queue traffic.
pub(crate) const WRITER_MARGIN: Duration = Duration::from_secs(3);

/// A response extension set by a handler whose answer is the same for every anonymous
/// viewer (a public read, not signed in): the web tier may then let edges and browsers keep
/// it. The web tier still refuses when the request carried credentials, the answer sets a
/// cookie, is partial or is not a 200.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shareable;

/// One edge that did not confirm a purge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeFailure {
    /// The edge's purge URL.
    pub edge: String,
    /// What went wrong (connection, time-out, status).
    pub reason: String,
}

/// Why a purge did not reach every edge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PurgeError {
    /// These edges did not confirm it.
    #[error("{}", failures(.0))]
    Failed(Vec<EdgeFailure>),
    /// This process knows of no edge (`edge.purge_urls` is empty here).
    #[error("no edge to purge: edge.purge_urls is empty on this node")]
    NoEdges,
}

fn failures(f: &[EdgeFailure]) -> String {
    f.iter()
        .map(|e| format!("edge {} failed: {}", e.edge, e.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The edge caches' purge listeners: "drop what these tokens tag, on every edge".
/// Implemented by the web tier over HTTP; the application never speaks HTTP itself.
#[async_trait]
pub trait Edges: Send + Sync + 'static {
    /// Soft-purges `tokens` on every edge at once, each edge bounded by a short time-out.
    ///
    /// # Errors
    /// [`PurgeError::Failed`] naming each edge that did not confirm the purge.
    async fn purge(&self, tokens: &[String]) -> Result<(), PurgeError>;
}

/// Duration of the purge a write makes before it answers, registered once.
static DIRECT_PURGE_SECONDS: std::sync::LazyLock<metrics::Histogram> =
    std::sync::LazyLock::new(|| {
        metrics::histogram!(crescendo_telemetry::names::EDGE_PURGE_DURATION)
    });

/// A write's edge purge: the tokens of the keys it changes and its outbox entries (empty
/// when this node has no edge, or the write committed nothing).
#[derive(Debug, Default)]
pub(crate) struct WritePurge {
    tokens: Vec<String>,
    entries: Vec<i64>,
}

/// Outbox entries whose purges are done, waiting to be removed. One remover at a time
/// deletes everything gathered so far in one `remove_outbox` call; entries finished while it
/// runs wait for the next call, so removals batch themselves under load without a timer.
#[derive(Debug, Default)]
pub(crate) struct Removals {
    /// Entries to remove.
    done: Mutex<Vec<i64>>,
    /// Whether a task is removing entries now.
    removing: AtomicBool,
}

impl App {
    /// Whether this process knows of edge caches to purge (`edge.purge_urls`).
    pub fn has_edges(&self) -> bool {
        self.inner.edges.is_some()
    }

    /// Runs the store write `write` with an `edge-purge` outbox entry for the tokens of
    /// `keys` in its transaction, when this node has edges; then [`App::invalidate`] sends it.
    /// `keys` must be known before the write: what the write changes, named by what existed
    /// before it (a new record's own key tags nothing an edge holds yet).
    ///
    /// # Errors
    /// The write's own.
    pub(crate) async fn purging<T>(
        &self,
        keys: &[String],
        write: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<(T, WritePurge)> {
        if self.inner.edges.is_none() || keys.is_empty() {
            return Ok((write.await?, WritePurge::default()));
        }
        let tokens = crescendo_cache::surrogate::tokens(keys);
        let settle = self.inner.purge_settle;
        let job = PendingJob {
            queue: EdgePurge::QUEUE,
            payload: EdgePurge {
                not_before_ms: now_ms().saturating_add(millis(settle)),
                tokens: tokens.clone(),
            }
            .encode(),
            lease_ms: i64::try_from(millis(settle + WRITER_MARGIN)).unwrap_or(i64::MAX),
        };
        let (out, entries) = outbox::with_jobs(vec![job], write).await;
        Ok((out?, WritePurge { tokens, entries }))
    }

    /// Purges a committed write's tokens on every edge, after the write has invalidated
    /// them in the cache (so an edge that refetches finds the new data), then, on a task of
    /// its own, again once the write has settled (`edge.purge_settle_ms`), and then removes
    /// the write's outbox entry. Never fails the write: a purge that an edge missed is sent
    /// again by the entry, which a relay publishes once its lease runs out.
    pub(crate) async fn purge_edges(&self, purge: WritePurge) {
        let Some(edges) = &self.inner.edges else {
            return;
        };
        if purge.tokens.is_empty() {
            return;
        }
        let started = Instant::now();
        let direct = edges.purge(&purge.tokens).await;
        DIRECT_PURGE_SECONDS.record(started.elapsed().as_secs_f64());
        if let Err(e) = direct {
            tracing::warn!(error = %e, "an edge missed a purge; it is sent again once the write has settled");
        }
        let app = self.clone();
        tokio::spawn(async move { app.settle_purge(purge).await });
    }

    /// The second purge of a write, once it has settled; its outbox entry is removed when
    /// every edge confirmed it, and otherwise left to a relay.
    async fn settle_purge(&self, purge: WritePurge) {
        let Some(edges) = &self.inner.edges else {
            return;
        };
        tokio::time::sleep(self.inner.purge_settle).await;
        match edges.purge(&purge.tokens).await {
            Ok(()) => self.remove_finished(purge.entries).await,
            Err(e) => tracing::warn!(
                error = %e,
                "an edge missed a settled purge; the outbox entry becomes a job when its lease ends"
            ),
        }
    }

    /// Removes outbox entries whose purges are done (see [`Removals`]). An entry that cannot
    /// be removed is published by a relay later: one purge too many, nothing worse.
    async fn remove_finished(&self, entries: Vec<i64>) {
        let r = &self.inner.removals;
        r.done.lock().expect("never poisoned").extend(entries);
        loop {
            if r.removing.swap(true, Ordering::SeqCst) {
                return; // the running remover takes them
            }
            let batch = std::mem::take(&mut *r.done.lock().expect("never poisoned"));
            if !batch.is_empty()
                && let Err(e) = self.store().remove_outbox(&batch).await
            {
                tracing::warn!(error = %e, "finished edge purges stay in the outbox; a relay sends them once more");
            }
            r.removing.store(false, Ordering::SeqCst);
            if r.done.lock().expect("never poisoned").is_empty() {
                return;
            }
        }
    }

    /// How many entries the outbox holds (leased by their writers, claimed by a relay, or
    /// waiting for one).
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn outbox_len(&self) -> StoreResult<u64> {
        self.store().outbox_len().await
    }

    /// Purges a queued [`EdgePurge`] on every edge once its time has come (waiting for it,
    /// at most `edge.purge_settle_ms`, so a skewed clock cannot hold a worker long).
    ///
    /// # Errors
    /// [`PurgeError`] naming the edges that did not confirm it; the job is then retried.
    pub async fn purge_edges_settled(&self, job: &EdgePurge) -> Result<(), PurgeError> {
        let Some(edges) = &self.inner.edges else {
            return Err(PurgeError::NoEdges);
        };
        let wait = Duration::from_millis(job.not_before_ms.saturating_sub(now_ms()));
        tokio::time::sleep(wait.min(self.inner.purge_settle)).await;
        edges.purge(&job.tokens).await
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_purge_names_each_edge() {
        let e = PurgeError::Failed(vec![
            EdgeFailure {
                edge: "http://127.0.0.1:8091".into(),
                reason: "connection refused".into(),
            },
            EdgeFailure {
                edge: "http://127.0.0.1:8092".into(),
                reason: "status 403".into(),
            },
        ]);
        assert_eq!(
            e.to_string(),
            "edge http://127.0.0.1:8091 failed: connection refused; \
             edge http://127.0.0.1:8092 failed: status 403"
        );
    }
}
