//! The `Queue` seam: durable jobs with at-least-once delivery.
//!
//! A job is published (in the embedded backend, inside the same database transaction as the
//! data it concerns: an outbox), claimed by one worker with a lease, then acknowledged. The
//! lease is short, and the worker extends it ([`Queue::extend`]) while its handler runs, so a
//! job outlives no lease however slow it is, and a worker that dies loses its job one lease
//! later. A job whose handler fails is retried after a back-off; after `max_attempts` it
//! becomes a dead letter with the reason kept. A worker that dies without acknowledging
//! leaves the job to be claimed again once the lease runs out, so handlers must be
//! idempotent; a job whose
//! workers died `max_attempts` times is handed out once more, not to run but to be given up
//! ([`Delivery::GiveUp`]), so what waits on it learns that it failed.
//!
//! Backends: the SQLite job table (`crescendo-store-sqlite`) and NATS JetStream
//! (`crescendo-queue-nats`). [`conformance`] holds the lease behaviour both must show.
//! This crate names no broker or database types.

use async_trait::async_trait;
use std::time::Duration;

pub mod conformance;

/// What a claim hands a job over for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// To run; when it fails, it runs again after a back-off.
    Run,
    /// To run for the last time: when it fails, it becomes a dead letter.
    LastRun,
    /// Not to run again: it was handed out `max_attempts` times and never answered (its
    /// workers died or hung), so it is given up with this reason. The worker lets its handler
    /// record that (an upload becomes `failed`), then [`Queue::fail`] makes it a dead letter;
    /// if the worker dies before, the job is handed out to give up again.
    GiveUp(String),
}

/// A claimed job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The backend's ID for the job.
    pub id: i64,
    /// The queue (kind of work) it was published to, e.g. `images.variants`.
    pub queue: String,
    /// What the handler needs, serialised by the publisher.
    pub payload: Vec<u8>,
    /// How many times it has been claimed, this claim included (a [`Delivery::GiveUp`] claim
    /// does not count).
    pub attempts: u32,
    /// What it is handed over for.
    pub delivery: Delivery,
}

/// How much work waits in a queue, for metrics and autoscaling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Jobs waiting or being worked on.
    pub pending: u64,
    /// Jobs that ran out of attempts.
    pub dead: u64,
    /// Age in milliseconds of the oldest pending job (0 when none).
    pub oldest_ms: u64,
}

/// What went wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend cannot be reached.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The job is not (or no longer) held by this claim: its lease ran out and another
    /// worker may have it.
    #[error("job {0} is not held by this claim")]
    LeaseLost(i64),
    /// Anything else.
    #[error("queue error: {0}")]
    Other(String),
}

/// Durable jobs with leases, retries and dead letters.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Adds a job to `queue`.
    async fn publish(&self, queue: &str, payload: &[u8]) -> Result<i64, QueueError>;
    /// Adds a job to `queue` under a key: a backend that can (NATS JetStream) stores a
    /// second publish with the same key, within minutes, only once. Used by the outbox relay,
    /// whose key is the outbox entry.
    async fn publish_keyed(
        &self,
        queue: &str,
        payload: &[u8],
        _key: &str,
    ) -> Result<i64, QueueError> {
        self.publish(queue, payload).await
    }
    /// Claims the oldest runnable job of `queue` for `lease`; `None` when there is none.
    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError>;
    /// Marks a claimed job done; it is removed.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the lease ran out and the job was claimed again.
    async fn ack(&self, job: &Job) -> Result<(), QueueError>;
    /// Extends a claimed job's lease: it is held for `lease` from now. A worker calls it
    /// while the job's handler runs, a few times per lease, so a slow job stays its own and a
    /// dead worker's job comes back one lease after its last extension.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the claim no longer holds the job (it was answered, or
    /// its lease ran out and it was claimed again), as far as the backend can tell;
    /// [`QueueError::Unavailable`] when the backend cannot be reached (try again before the
    /// lease runs out).
    async fn extend(&self, job: &Job, lease: Duration) -> Result<(), QueueError>;
    /// Marks a claimed job failed: retried after `retry_after`, or dead once out of attempts.
    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError>;
    /// The queue's depth.
    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError>;
}
