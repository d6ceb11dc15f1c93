//! [`JobSource`]: what the job loop needs from wherever its jobs are kept. A Crescendo
//! process's workers take their jobs through the [`App`] (the only caller of the `Queue`
//! seam); a bare [`Queue`] is a source too, for tools and tests of the loop itself.

use async_trait::async_trait;
use crescendo_app::App;
use crescendo_queue::{Job, Queue, QueueDepth, QueueError};
use std::sync::Arc;
use std::time::Duration;

/// Claims, answers and measures jobs for a [`Worker`](crate::Worker).
#[async_trait]
pub trait JobSource: Send + Sync + 'static {
    /// Claims the oldest runnable job of `queue` and holds it for `lease`.
    ///
    /// # Errors
    /// The jobs cannot be reached, or cannot be held for `lease`.
    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError>;
    /// Holds a claimed job for `lease` from now.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim no longer holds the job;
    /// [`QueueError::Unavailable`] when the jobs cannot be reached.
    async fn extend(&self, job: &Job, lease: Duration) -> Result<(), QueueError>;
    /// Marks a claimed job done.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim ran out.
    async fn ack(&self, job: &Job) -> Result<(), QueueError>;
    /// Hands a failed job back, to run again after `retry_after` or to die with `reason`.
    ///
    /// # Errors
    /// The jobs cannot be reached, or the claim ran out.
    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError>;
    /// How much work waits in `queue`.
    ///
    /// # Errors
    /// The jobs cannot be reached.
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError>;
}

#[async_trait]
impl JobSource for App {
    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        self.claim_job(queue, lease).await
    }

    async fn extend(&self, job: &Job, lease: Duration) -> Result<(), QueueError> {
        self.extend_job(job, lease).await
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        self.ack_job(job).await
    }

    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError> {
        self.fail_job(job, reason, retry_after).await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        self.queue_depth(queue).await
    }
}

#[async_trait]
impl JobSource for Arc<dyn Queue> {
    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        Queue::claim(&**self, queue, lease).await
    }

    async fn extend(&self, job: &Job, lease: Duration) -> Result<(), QueueError> {
        Queue::extend(&**self, job, lease).await
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        Queue::ack(&**self, job).await
    }

    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError> {
        Queue::fail(&**self, job, reason, retry_after).await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        Queue::depth(&**self, queue).await
    }
}
