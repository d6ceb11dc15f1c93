//! The job loop shared by `crescendo worker` and the in-process workers of `serve`.
//!
//! A [`Worker`] claims jobs from the [`Queue`] seam for the queues its [`Handler`]s serve,
//! runs at most `concurrency` at once, and acknowledges each one that succeeds. A failed job
//! is handed back with an exponential back-off (1 s, 2 s, 4 s … capped at 5 minutes) until
//! the queue dead-letters it. A handler that outlives its lease loses the job to another
//! worker, which is why handlers must be idempotent. On shutdown the worker stops claiming
//! and waits for the jobs it holds.
//!
//! Metrics: `crescendo_jobs_total{queue, outcome}` (`ok`, `retry`, `lease_lost`),
//! `crescendo_jobs_in_progress{queue}` and `crescendo_queue_depth{queue}`.

use async_trait::async_trait;
use crescendo_queue::{Job, Queue};
use crescendo_telemetry::names;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Work for one queue.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The queue this handler serves, e.g. `images.variants`.
    fn queue(&self) -> &'static str;
    /// Does the job. Called again for the same job after a failure or a lost lease, so it
    /// must be idempotent.
    ///
    /// # Errors
    /// Why the job failed; it is retried later and kept with the job.
    async fn handle(&self, job: &Job) -> Result<(), String>;
}

/// How a worker claims and runs jobs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim holds a job; a handler must finish within it.
    pub lease: Duration,
    /// How long to wait before asking again when every queue was empty.
    pub idle_poll: Duration,
    /// How often the queue depth gauge is refreshed.
    pub depth_every: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 2,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_millis(200),
            depth_every: Duration::from_secs(5),
        }
    }
}

/// Claims and runs jobs until told to stop.
pub struct Worker {
    queue: Arc<dyn Queue>,
    handlers: Vec<Arc<dyn Handler>>,
    options: WorkerOptions,
}

/// The delay before the next attempt of a job that has failed `attempts` times.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

impl Worker {
    /// A worker over `queue` running `handlers`.
    pub fn new(
        queue: Arc<dyn Queue>,
        handlers: Vec<Arc<dyn Handler>>,
        options: WorkerOptions,
    ) -> Self {
        Self {
            queue,
            handlers,
            options,
        }
    }

    /// Runs until `stop` turns true, then waits for the jobs in hand.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let mut last_depth = tokio::time::Instant::now() - self.options.depth_every;
        while !*stop.borrow() {
            if last_depth.elapsed() >= self.options.depth_every {
                self.report_depth().await;
                last_depth = tokio::time::Instant::now();
            }
            let mut claimed = false;
            for handler in &self.handlers {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                match self.queue.claim(handler.queue(), self.options.lease).await {
                    Ok(Some(job)) => {
                        claimed = true;
                        let (queue, handler) = (Arc::clone(&self.queue), Arc::clone(handler));
                        let in_progress =
                            metrics::gauge!(names::JOBS_IN_PROGRESS, "queue" => handler.queue());
                        in_progress.increment(1.0);
                        tokio::spawn(async move {
                            run_one(&*queue, &*handler, job).await;
                            in_progress.decrement(1.0);
                            drop(permit);
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(queue = handler.queue(), error = %e, "cannot claim jobs")
                    }
                }
            }
            if !claimed {
                tokio::select! {
                    _ = tokio::time::sleep(self.options.idle_poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        // wait for every job in hand: all permits back
        let _ = permits
            .acquire_many(self.options.concurrency.max(1) as u32)
            .await;
        tracing::info!("worker stopped");
    }

    async fn report_depth(&self) {
        for h in &self.handlers {
            if let Ok(d) = self.queue.depth(h.queue()).await {
                metrics::gauge!(names::QUEUE_DEPTH, "queue" => h.queue()).set(d.pending as f64);
            }
        }
    }
}

async fn run_one(queue: &dyn Queue, handler: &dyn Handler, job: Job) {
    let q = handler.queue();
    let outcome = match handler.handle(&job).await {
        Ok(()) => match queue.ack(&job).await {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(queue = q, job_id = job.id, error = %e, "job done but not acknowledged");
                "lease_lost"
            }
        },
        Err(reason) => {
            tracing::warn!(queue = q, job_id = job.id, attempts = job.attempts, %reason, "job failed");
            match queue.fail(&job, &reason, backoff(job.attempts)).await {
                Ok(()) => "retry",
                Err(e) => {
                    tracing::warn!(queue = q, job_id = job.id, error = %e, "could not hand the failed job back");
                    "lease_lost"
                }
            }
        }
    };
    metrics::counter!(names::JOBS, "queue" => q, "outcome" => outcome).increment(1);
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|a| super::backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(super::backoff(0).as_secs(), 1);
    }
}
