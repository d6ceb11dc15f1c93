//! [`EdgePurges`]: the handler of edge purges that a write's node could not finish itself
//! ([`EdgePurge`] jobs, published from the write's outbox entry once its lease ran out).

use crate::Handler;
use async_trait::async_trait;
use crescendo_app::{App, PurgeError};
use crescendo_queue::Job;
use crescendo_store::jobs::{EdgePurge, PayloadError};

/// Purges a write's surrogate keys on every edge once the write has settled
/// ([`App::purge_edges_settled`]), for a node that died after the commit or whose own purge
/// failed; fails, and is retried with the back-off, while any edge does not confirm it.
pub struct EdgePurges(pub App);

/// Why an edge-purge job failed.
#[derive(Debug, thiserror::Error)]
pub enum EdgePurgeError {
    /// The payload is not an [`EdgePurge`] job.
    #[error(transparent)]
    BadPayload(#[from] PayloadError),
    /// Some edge did not confirm the purge.
    #[error(transparent)]
    Purge(#[from] PurgeError),
}

#[async_trait]
impl Handler for EdgePurges {
    type Error = EdgePurgeError;

    fn queue(&self) -> &'static str {
        EdgePurge::QUEUE
    }

    async fn handle(&self, job: &Job) -> Result<(), EdgePurgeError> {
        let purge = EdgePurge::decode(&job.payload)?;
        Ok(self.0.purge_edges_settled(&purge).await?)
    }

    /// Nothing waits on a purge; the reason names each edge that never confirmed it, which
    /// may serve the old answers until their TTL (`edge.ttl_secs`) ends.
    async fn give_up(&self, job: &Job, reason: &str) -> Result<(), EdgePurgeError> {
        tracing::error!(
            job_id = job.id,
            reason,
            "edge purge given up: those edges may serve old answers until their TTL ends"
        );
        Ok(())
    }
}
