//! The workers' door to the queue: claiming, answering and measuring jobs
//! ([`App::claim_job`], [`App::extend_job`], [`App::ack_job`], [`App::fail_job`],
//! [`App::queue_depth`]), and the
//! outbox relay that hands jobs committed with their data to the queue
//! ([`App::relay_outbox`]). Workers reach the queue only through these; what a job's payload
//! means is defined in `crescendo_store::jobs`.

use crate::{App, RelayError};
use crescendo_queue::{Job, QueueDepth, QueueError};
use std::time::Duration;

/// How long a relay holds outbox entries it is publishing.
const RELAY_LEASE_MS: i64 = 30_000;

impl App {
    /// Claims the oldest runnable job of `queue` and holds it for `lease`; `None` when there
    /// is none.
    ///
    /// # Errors
    /// The queue cannot be reached, or cannot hold a job for `lease`.
    pub async fn claim_job(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        self.queue().claim(queue, lease).await
    }

    /// Holds a claimed job for `lease` from now; a worker calls it while the job runs.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim no longer holds the job;
    /// [`QueueError::Unavailable`] when the queue cannot be reached.
    pub async fn extend_job(&self, job: &Job, lease: Duration) -> Result<(), QueueError> {
        self.queue().extend(job, lease).await
    }

    /// Marks a claimed job done.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the lease ran out and the job may be another worker's.
    pub async fn ack_job(&self, job: &Job) -> Result<(), QueueError> {
        self.queue().ack(job).await
    }

    /// Hands a failed job back: retried after `retry_after`, or a dead letter keeping
    /// `reason` once out of attempts.
    ///
    /// # Errors
    /// The queue cannot be reached, or the job is no longer held by this claim.
    pub async fn fail_job(
        &self,
        job: &Job,
        reason: &str,
        retry_after: Duration,
    ) -> Result<(), QueueError> {
        self.queue().fail(job, reason, retry_after).await
    }

    /// How much work waits in `queue`.
    ///
    /// # Errors
    /// The queue cannot be reached.
    pub async fn queue_depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        self.queue().depth(queue).await
    }

    /// Hands committed outbox jobs to the queue; returns how many. A job published but not
    /// yet removed when the process dies is published again by the next relay (handlers are
    /// idempotent).
    ///
    /// # Errors
    /// The store or the queue is unavailable.
    pub async fn relay_outbox(&self) -> Result<usize, RelayError> {
        let entries = self.store().claim_outbox(100, RELAY_LEASE_MS).await?;
        let mut done = Vec::with_capacity(entries.len());
        let mut failed = None;
        for e in &entries {
            match self
                .queue()
                .publish_keyed(&e.queue, &e.payload, &format!("outbox-{}", e.id))
                .await
            {
                Ok(_) => done.push(e.id),
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        if !done.is_empty() {
            self.store().remove_outbox(&done).await?;
        }
        match failed {
            Some(err) => Err(err.into()),
            None => Ok(done.len()),
        }
    }

    /// Waits until an upload in this process adds to the outbox, or `timeout` passes.
    pub async fn outbox_signal(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.inner.outbox.notified()).await;
    }
}
