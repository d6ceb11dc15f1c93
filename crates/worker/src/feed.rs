//! [`Feeds`]: the handler of feed jobs ([`FeedJob`]), the fan-out on write of a store that
//! keeps timelines (see `App::run_feed_job`).

use crate::Handler;
use async_trait::async_trait;
use crescendo_app::{App, AppError};
use crescendo_queue::Job;
use crescendo_store::jobs::{FeedJob, PayloadError};

/// Syncs the followee's side of follows, fans new articles out to followers' timelines,
/// back-fills timelines on a follow and removes deleted articles from them; fails, and is
/// retried with the back-off, while a cluster it needs is unavailable.
pub struct Feeds(pub App);

/// Why a feed job failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The payload is not a [`FeedJob`].
    #[error(transparent)]
    BadPayload(#[from] PayloadError),
    /// The store failed.
    #[error(transparent)]
    App(#[from] AppError),
}

#[async_trait]
impl Handler for Feeds {
    type Error = FeedError;

    fn queue(&self) -> &'static str {
        FeedJob::QUEUE
    }

    async fn handle(&self, job: &Job) -> Result<(), FeedError> {
        let feed = FeedJob::decode(&job.payload)?;
        self.0.run_feed_job(feed).await?;
        Ok(())
    }

    /// Followers of the job's author (or the follower) miss its change in their feeds
    /// until a later job brings it; the reason is logged.
    async fn give_up(&self, job: &Job, reason: &str) -> Result<(), FeedError> {
        tracing::error!(
            job_id = job.id,
            reason,
            "feed job given up: some timelines miss its change"
        );
        Ok(())
    }
}
