//! The feed by fan-out on write: what a [`FeedJob`] does, on any [`Store`] (the worker's
//! handler runs it through the application; tests run it directly). On a store without
//! timelines (`Store::timeline_threshold` is `None`) every job does nothing.
//!
//! - A follow or unfollow syncs the followee's side of the follow ("who follows me", kept
//!   with the followee), then, if the follow stands and the followee is no celebrity,
//!   back-fills the followee's newest articles into the follower's timeline.
//! - A new article goes into each follower's timeline, [`FAN_OUT_PAGE`] followers at a time
//!   (the store batches each page per cluster), unless its author has more followers than
//!   the threshold: a celebrity's articles are merged into feeds at read time instead, so a
//!   post costs no write per follower.
//! - A deletion removes the article from every timeline.
//!
//! Every step is idempotent (a retried job adds nothing twice), and the store adds an entry
//! only while its owner follows its author, so a late job cannot bring back an unfollowed
//! author.

use crate::jobs::FeedJob;
use crate::{ArticleFilter, Page, Store, StoreResult, TimelineEntry};
use crescendo_domain::Id;

/// Followers read and written per step of a fan-out.
pub const FAN_OUT_PAGE: u32 = 1_000;

/// Runs `job` on `s`, back-filling up to `back_fill` articles on a follow; how many
/// timeline entries it added or removed.
///
/// # Errors
/// The store's (the job is then retried).
pub async fn run(s: &dyn Store, job: FeedJob, back_fill: u32) -> StoreResult<u64> {
    let Some(threshold) = s.timeline_threshold().await? else {
        return Ok(0);
    };
    match job {
        FeedJob::Follow { follower, followee } => {
            let follows = s.sync_follower(follower, followee).await?;
            if !follows || s.followers_count(followee).await? > threshold {
                return Ok(0);
            }
            let newest = s
                .list_article_ids(
                    &ArticleFilter::Author(followee),
                    Page {
                        limit: back_fill,
                        offset: 0,
                    },
                )
                .await?;
            let entries: Vec<TimelineEntry> = newest
                .ids
                .into_iter()
                .map(|article| TimelineEntry {
                    owner: follower,
                    article,
                    author: followee,
                })
                .collect();
            s.add_to_timelines(&entries).await
        }
        FeedJob::Publish { article, author } => {
            if s.followers_count(author).await? > threshold {
                return Ok(0); // a celebrity: merged into feeds on read
            }
            fan_out(s, article, author).await
        }
        FeedJob::Unpublish { article } => s.remove_from_timelines(article).await,
    }
}

/// Adds `article` to the timeline of every follower of `author`, a page at a time.
async fn fan_out(s: &dyn Store, article: Id, author: Id) -> StoreResult<u64> {
    let mut after = None;
    let mut added = 0;
    loop {
        let followers = s.followers_page(author, after, FAN_OUT_PAGE).await?;
        let Some(&last) = followers.last() else {
            return Ok(added);
        };
        let entries: Vec<TimelineEntry> = followers
            .iter()
            .map(|&owner| TimelineEntry {
                owner,
                article,
                author,
            })
            .collect();
        added += s.add_to_timelines(&entries).await?;
        if followers.len() < FAN_OUT_PAGE as usize {
            return Ok(added);
        }
        after = Some(last);
    }
}

/// Runs every feed job waiting in the outbox (claiming, running and removing them), as a
/// relay and a worker would, until none is left; how many ran. For tests and tools that
/// run a store without workers; other entries are left for their relay.
///
/// # Errors
/// The store's, or a feed entry whose payload is not a [`FeedJob`].
pub async fn drain(s: &dyn Store, back_fill: u32) -> StoreResult<usize> {
    let mut ran = 0;
    loop {
        let feed: Vec<_> = s
            .claim_outbox(1_000, 10_000)
            .await?
            .into_iter()
            .filter(|e| e.queue == FeedJob::QUEUE)
            .collect();
        if feed.is_empty() {
            return Ok(ran);
        }
        for e in &feed {
            let job = FeedJob::decode(&e.payload)
                .map_err(|err| crate::StoreError::Other(Box::new(err)))?;
            run(s, job, back_fill).await?;
        }
        ran += feed.len();
        s.remove_outbox(&feed.iter().map(|e| e.id).collect::<Vec<_>>())
            .await?;
    }
}
