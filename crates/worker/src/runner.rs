//! The job loop: [`Worker`] claims jobs from a [`JobSource`] for the queues its [`Handler`]s
//! serve, runs at most `concurrency` at once, acknowledges each one that succeeds and hands
//! back each one that fails, with an exponential back-off ([`backoff`]). While a handler
//! runs, its job's lease is extended every third of a lease, so a job may take
//! longer than a lease, and a worker that dies loses its jobs one lease later.

use crate::JobSource;
use async_trait::async_trait;
use crescendo_config::QueueSettings;
use crescendo_queue::{Delivery, Job, QueueError};
use crescendo_telemetry::names;
use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Work for one queue.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Why a job failed; its text is the reason kept with the job (and with its dead letter).
    type Error: Error + Send + Sync + 'static;
    /// The queue this handler serves, e.g. `images.variants`.
    fn queue(&self) -> &'static str;
    /// Does the job. Called again for the same job after a failure or a lost lease, so it
    /// must be idempotent.
    ///
    /// # Errors
    /// Why the job failed; it is retried later and kept with the job.
    async fn handle(&self, job: &Job) -> Result<(), Self::Error>;
    /// Records that the job is given up with `reason` (after its last run failed, or when
    /// its workers died on it `max_attempts` times), e.g. marks what waits on it failed.
    /// Nothing by default. Called again if the worker dies before the job is dead-lettered,
    /// so it must be idempotent too.
    ///
    /// # Errors
    /// It could not be recorded now; the job is handed out to be given up again.
    async fn give_up(&self, _job: &Job, _reason: &str) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A [`Handler`] whose error type is erased, so one worker can hold handlers of several.
#[async_trait]
trait Erased: Send + Sync + 'static {
    fn queue(&self) -> &'static str;
    async fn run(&self, job: &Job) -> Result<(), Box<dyn Error + Send + Sync>>;
    async fn give_up(&self, job: &Job, reason: &str) -> Result<(), Box<dyn Error + Send + Sync>>;
}

#[async_trait]
impl<H: Handler> Erased for H {
    fn queue(&self) -> &'static str {
        Handler::queue(self)
    }

    async fn run(&self, job: &Job) -> Result<(), Box<dyn Error + Send + Sync>> {
        Ok(self.handle(job).await?)
    }

    async fn give_up(&self, job: &Job, reason: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
        Ok(Handler::give_up(self, job, reason).await?)
    }
}

/// How a worker claims and runs jobs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim holds a job unless extended; the worker extends it every third of
    /// it while the job's handler runs, so this is how soon a dead worker's job comes back.
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
            lease: Duration::from_secs(15),
            idle_poll: Duration::from_millis(200),
            depth_every: Duration::from_secs(5),
        }
    }
}

impl WorkerOptions {
    /// The options of a Crescendo process's workers: `queue.workers` jobs at once (at least
    /// one), each claimed for `queue.lease_secs` (at least a second).
    pub fn from_settings(queue: &QueueSettings) -> Self {
        Self {
            concurrency: queue.workers.max(1),
            lease: Duration::from_secs(queue.lease_secs.max(1)),
            idle_poll: Duration::from_millis(100),
            ..Self::default()
        }
    }
}

/// Claims and runs jobs until told to stop.
pub struct Worker {
    source: Arc<dyn JobSource>,
    handlers: Vec<Arc<dyn Erased>>,
    options: WorkerOptions,
}

/// The delay before the next attempt of a job that has failed `attempts` times.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

impl Worker {
    /// A worker over the jobs of `source`, serving no queue until [`Worker::serve`] adds one.
    pub fn new(source: impl JobSource, options: WorkerOptions) -> Self {
        Self {
            source: Arc::new(source),
            handlers: Vec::new(),
            options,
        }
    }

    /// Adds `handler`: the worker claims jobs of its queue too.
    #[must_use]
    pub fn serve<H: Handler>(mut self, handler: Arc<H>) -> Self {
        self.handlers.push(handler);
        self
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
                match self.source.claim(handler.queue(), self.options.lease).await {
                    Ok(Some(job)) => {
                        claimed = true;
                        let (source, handler) = (Arc::clone(&self.source), Arc::clone(handler));
                        let lease = self.options.lease;
                        let in_progress =
                            metrics::gauge!(names::JOBS_IN_PROGRESS, "queue" => handler.queue());
                        in_progress.increment(1.0);
                        tokio::spawn(async move {
                            run_one(&*source, &*handler, job, lease).await;
                            in_progress.decrement(1.0);
                            drop(permit);
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(queue = handler.queue(), error = %e, "cannot claim jobs");
                    }
                }
            }
            if !claimed {
                tokio::select! {
                    () = tokio::time::sleep(self.options.idle_poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        // wait for every job in hand: all permits back
        let all = u32::try_from(self.options.concurrency.max(1)).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
        tracing::info!("worker stopped");
    }

    async fn report_depth(&self) {
        for h in &self.handlers {
            if let Ok(d) = self.source.depth(h.queue()).await {
                metrics::gauge!(names::QUEUE_DEPTH, "queue" => h.queue()).set(d.pending as f64);
                metrics::gauge!(names::QUEUE_OLDEST_AGE, "queue" => h.queue())
                    .set(d.oldest_ms as f64 / 1000.0);
            }
        }
    }
}

async fn run_one(source: &dyn JobSource, handler: &dyn Erased, job: Job, lease: Duration) {
    let q = handler.queue();
    let outcome = match &job.delivery {
        Delivery::GiveUp(reason) => give_up(source, handler, &job, reason, lease).await,
        Delivery::Run | Delivery::LastRun => {
            let (result, held) = renewing(source, &job, lease, handler.run(&job)).await;
            let outcome = match result {
                Ok(()) => match source.ack(&job).await {
                    Ok(()) => "ok",
                    Err(e) => {
                        tracing::warn!(queue = q, job_id = job.id, error = %e, "job done but not acknowledged");
                        "lease_lost"
                    }
                },
                Err(e) if job.delivery == Delivery::LastRun => {
                    let reason = e.to_string();
                    tracing::warn!(queue = q, job_id = job.id, attempts = job.attempts, %reason, "job failed for the last time");
                    give_up(source, handler, &job, &reason, lease).await
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(queue = q, job_id = job.id, attempts = job.attempts, %reason, "job failed");
                    match source.fail(&job, &reason, backoff(job.attempts)).await {
                        Ok(()) => "retry",
                        Err(e) => {
                            tracing::warn!(queue = q, job_id = job.id, error = %e, "could not hand the failed job back");
                            "lease_lost"
                        }
                    }
                }
            };
            if held { outcome } else { "lease_lost" }
        }
    };
    metrics::counter!(names::JOBS, "queue" => q, "outcome" => outcome).increment(1);
}

/// Runs `work` while extending `job`'s lease every third of `lease`; with its output, whether
/// the claim still held the job at the last extension. An extension that cannot reach the
/// queue is tried again at the next tick; one that answers that the claim lost the job (its
/// lease ran out and another worker took it) is logged, and the work still runs to its end,
/// its answer then refused like any answer of a lost claim.
async fn renewing<T>(
    source: &dyn JobSource,
    job: &Job,
    lease: Duration,
    work: impl Future<Output = T>,
) -> (T, bool) {
    let renew = renew_until_lost(source, job, lease);
    tokio::pin!(work, renew);
    tokio::select! {
        out = &mut work => (out, true),
        () = &mut renew => (work.await, false),
    }
}

/// Extends `job`'s lease every third of `lease` until an extension answers that the claim
/// lost the job.
async fn renew_until_lost(source: &dyn JobSource, job: &Job, lease: Duration) {
    let q = job.queue.as_str();
    let every = (lease / 3).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match source.extend(job, lease).await {
            Ok(()) => {}
            Err(QueueError::LeaseLost(_)) => {
                tracing::warn!(
                    queue = q,
                    job_id = job.id,
                    "job's lease lost while it ran: another worker may have it"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(queue = q, job_id = job.id, error = %e, "cannot extend the job's lease; trying again");
            }
        }
    }
}

/// Lets the handler record that `job` is given up with `reason` (extending the lease while
/// it does), then makes it a dead letter. When the handler cannot record it now, the job is
/// left to its lease and handed out to be given up again.
async fn give_up(
    source: &dyn JobSource,
    handler: &dyn Erased,
    job: &Job,
    reason: &str,
    lease: Duration,
) -> &'static str {
    let q = handler.queue();
    let (recorded, held) = renewing(source, job, lease, handler.give_up(job, reason)).await;
    if let Err(e) = recorded {
        tracing::warn!(queue = q, job_id = job.id, error = %e, "could not record a job given up; it is handed out again");
        return "lease_lost";
    }
    match source.fail(job, reason, Duration::ZERO).await {
        Ok(()) if held => "dead",
        Ok(()) => "lease_lost",
        Err(e) => {
            tracing::warn!(queue = q, job_id = job.id, error = %e, "could not dead-letter the job given up");
            "lease_lost"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 1);
    }

    #[test]
    fn options_from_settings_claim_for_the_configured_lease() {
        // the settings' lease and workers, then the options' lease and concurrency; zeros
        // are raised to one
        for (lease_secs, workers, lease, concurrency) in [(7, 3, 7, 3), (0, 0, 1, 1)] {
            let queue = QueueSettings {
                lease_secs,
                workers,
                ..QueueSettings::default()
            };
            let o = WorkerOptions::from_settings(&queue);
            let want = (Duration::from_secs(lease), concurrency);
            assert_eq!((o.lease, o.concurrency), want, "{queue:?}");
        }
    }
}
