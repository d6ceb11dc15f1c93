//! The feed by fan-out on write, on a store that keeps timelines (a sharded store; see
//! `Store::timeline_threshold`). The store writes a `FeedJob` into the outbox in the
//! transaction of each follow, unfollow, new article and deletion, on the cluster that
//! commits it; a relay publishes it at once and a worker runs it here
//! (`crescendo_store::feed` says what each does). Feeds on such a store are read from the
//! store (the reader's timeline and the celebrities' newest articles), not from cached
//! author heads, so there is no per-reader feed entry in the cache to invalidate.

use crate::lists::HEAD_LEN;
use crate::{App, AppResult};
use crescendo_store::jobs::FeedJob;

impl App {
    /// Whether feeds are timelines filled by fan-out on write (the store keeps them).
    ///
    /// # Errors
    /// The store's own (none keeps it from answering today).
    pub async fn feeds_by_fan_out(&self) -> AppResult<bool> {
        Ok(self.store().timeline_threshold().await?.is_some())
    }

    /// Runs one feed job, back-filling a list head's worth ([`HEAD_LEN`]) on a follow; how
    /// many timeline entries it added or removed.
    ///
    /// # Errors
    /// The store is unavailable (the job is retried).
    #[tracing::instrument(skip_all)]
    pub async fn run_feed_job(&self, job: FeedJob) -> AppResult<u64> {
        Ok(crescendo_store::feed::run(self.store(), job, HEAD_LEN).await?)
    }
}
