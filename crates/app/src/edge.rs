//! The edge caches (a CDN in front of the balancer): which answers they may keep
//! ([`Shareable`]), and how a write purges what it changed from every one of them
//! ([`Edges`], [`App::purge_edges`], [`App::purge_edges_settled`]).
//!
//! An edge keeps an anonymous answer under the tokens of the cache keys it was made from
//! (`crescendo_cache::surrogate`). After a write has invalidated its keys in the cache
//! tier, their tokens are purged on every edge at once, and an `edge-purge` job is queued
//! to purge them again once the write has settled: an edge that refetched in between from a
//! node whose near cache had not yet dropped the old entry is corrected then.

use crate::{App, AppError, AppResult, now_ms};
use async_trait::async_trait;
use crescendo_store::jobs::EdgePurge;
use std::time::{Duration, Instant};

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

impl App {
    /// Whether this process knows of edge caches to purge (`edge.purge_urls`).
    pub fn has_edges(&self) -> bool {
        self.inner.edges.is_some()
    }

    /// Purges the tokens of `keys` on every edge, after the write that changed them has
    /// invalidated them in the cache (so an edge that refetches finds the new data), then
    /// queues the same purge for when the write has settled (`edge.purge_settle_ms`). Both
    /// run at once: the queued one waits for its time anyway. Nothing without edges.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when an edge missed the purge and the job that would repeat
    /// it could not be queued either: that edge may serve the old answer until its TTL ends.
    pub(crate) async fn purge_edges(&self, keys: &[String]) -> AppResult<()> {
        let Some(edges) = &self.inner.edges else {
            return Ok(());
        };
        let tokens = crescendo_cache::surrogate::tokens(keys);
        let job = EdgePurge {
            not_before_ms: now_ms().saturating_add(
                u64::try_from(self.inner.purge_settle.as_millis()).unwrap_or(u64::MAX),
            ),
            tokens,
        };
        let direct = async {
            let started = Instant::now();
            let r = edges.purge(&job.tokens).await;
            DIRECT_PURGE_SECONDS.record(started.elapsed().as_secs_f64());
            r
        };
        let payload = job.encode();
        let queued = self.queue().publish(EdgePurge::QUEUE, &payload);
        let (direct, queued) = futures_util::future::join(direct, queued).await;
        match (direct, queued) {
            (Ok(()), Ok(_)) => Ok(()),
            (Ok(()), Err(e)) => {
                tracing::warn!(error = %e, "edges purged, but the settled purge could not be queued");
                Ok(())
            }
            (Err(e), Ok(_)) => {
                tracing::warn!(error = %e, "an edge missed a purge; the queued purge repeats it");
                Ok(())
            }
            (Err(e), Err(q)) => {
                tracing::error!(error = %e, queue_error = %q, ?keys, "an edge missed a purge and none could be queued");
                Err(AppError::Unavailable)
            }
        }
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
