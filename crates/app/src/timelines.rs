//! The feed by fan-out on write, on a store that keeps timelines (a sharded store; see
//! `Store::timeline_threshold`). The store writes a `FeedJob` into the outbox in the
//! transaction of each follow, unfollow, new article and deletion, on the cluster that
//! commits it; a relay publishes it at once and a worker runs it here
//! (`crescendo_store::feed` says what each does), then invalidates the cached timeline of
//! every follower it wrote to, in batches, and the celebrity set when an author crossed
//! the threshold.
//!
//! A feed read is then, with the cache warm, no database query: the viewer's followees
//! (`followees:{id}`), the set of celebrities (`celebrities`, one key for everyone), the
//! viewer's timeline head (`timeline:{id}`: its newest [`HEAD_LEN`] IDs and its total) and
//! the author heads of the few celebrities the viewer follows, merged newest first. The
//! viewer's own follow and unfollow invalidate their timeline head too (the unfollow
//! removes the followee's entries in its transaction; the follow's back-fill comes with its
//! job).

use crate::lists::{HEAD_LEN, MAX_MERGED_AUTHORS, merge_newest};
use crate::{App, AppError, AppResult, keys};
use crescendo_domain::Id;
use crescendo_store::jobs::FeedJob;
use crescendo_store::{ArticleFilter, IdPage, Page};
use futures_util::future::join_all;
use std::sync::Arc;

/// Cache keys invalidated per call after a fan-out (one round trip per server each).
const INVALIDATE_BATCH: usize = 1_000;

impl App {
    /// Whether feeds are timelines filled by fan-out on write (the store keeps them).
    ///
    /// # Errors
    /// The store's own (none keeps it from answering today).
    pub async fn feeds_by_fan_out(&self) -> AppResult<bool> {
        Ok(self.store().timeline_threshold().await?.is_some())
    }

    /// Runs one feed job, back-filling a list head's worth ([`HEAD_LEN`]) on a follow, and
    /// invalidates the cached timelines it changed (and the celebrity set when an author
    /// crossed the threshold); how many timeline entries it added or removed.
    ///
    /// # Errors
    /// The store or the cache is unavailable (the job is retried; its store steps are
    /// idempotent).
    #[tracing::instrument(skip_all)]
    pub async fn run_feed_job(&self, job: FeedJob) -> AppResult<u64> {
        let outcome = crescendo_store::feed::run(self.store(), job, HEAD_LEN).await?;
        // every owner it wrote for, or would have: a retry of a job whose first run failed
        // before invalidating finds its entries there already and must invalidate anyway
        let mut stale: Vec<String> = outcome.owners.iter().copied().map(keys::timeline).collect();
        if outcome.celebrities_changed {
            stale.push(keys::celebrities());
        }
        for batch in stale.chunks(INVALIDATE_BATCH) {
            self.cache()
                .invalidate_at(batch, crescendo_store::fence::wrote())
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "feed cache invalidation failed");
                    AppError::Unavailable
                })?;
        }
        Ok(outcome.rows())
    }

    /// Every user above the celebrity threshold, by ascending ID, cached as one key.
    async fn celebrities(&self) -> AppResult<Arc<Vec<Id>>> {
        let v = self
            .cached(&keys::celebrities(), || async {
                Ok::<_, AppError>(Some(self.store().celebrities().await?))
            })
            .await?;
        Ok(v.unwrap_or_default())
    }

    /// The newest [`HEAD_LEN`] IDs of `viewer`'s timeline and its total, cached.
    async fn timeline_head(&self, viewer: Id) -> AppResult<Arc<IdPage>> {
        let page = Page {
            limit: HEAD_LEN,
            offset: 0,
        };
        let v = self
            .cached(&keys::timeline(viewer), || async {
                Ok::<_, AppError>(Some(self.store().timeline(viewer, page).await?))
            })
            .await?;
        Ok(v.unwrap_or_default())
    }

    /// The feed of a store with timelines, for a window within the heads: the viewer's
    /// timeline head merged with the author heads of the celebrities they follow. An
    /// article in both (its author crossed the threshold and the job that moves them is
    /// still running) is shown once; the total is the sum of the parts, exact once no
    /// crossing job is running.
    pub(crate) async fn timeline_feed_ids(&self, viewer: Id, page: Page) -> AppResult<IdPage> {
        let (followees, celebrities) =
            futures_util::future::try_join(self.followees(viewer), self.celebrities()).await?;
        if followees.is_empty() {
            return Ok(IdPage::default());
        }
        let followed: Vec<Id> = followees
            .iter()
            .copied()
            .filter(|f| celebrities.binary_search(f).is_ok())
            .collect();
        if followed.len() > MAX_MERGED_AUTHORS {
            return Ok(self
                .store()
                .list_article_ids(&ArticleFilter::Feed(viewer), page)
                .await?);
        }
        let mut parts = vec![self.timeline_head(viewer).await?];
        // a celebrity whose cluster is down is left out, and the feed says it is partial
        let mut unavailable = false;
        for head in join_all(followed.iter().map(|&author| self.author_head(author))).await {
            match head {
                Ok(h) => parts.push(h),
                Err(AppError::Unavailable) => unavailable = true,
                Err(e) => return Err(e),
            }
        }
        if unavailable {
            crescendo_store::fence::note_partial();
        }
        let total = parts.iter().map(|h| h.total).sum();
        // every part holds its list's newest HEAD_LEN IDs and offset + limit <= HEAD_LEN
        let merged = merge_newest(&parts, (page.offset + page.limit) as usize);
        let ids = merged.into_iter().skip(page.offset as usize).collect();
        Ok(IdPage { ids, total })
    }
}
