//! The feed by fan-out on write: what a [`FeedJob`] does, on any [`Store`] (the worker's
//! handler runs it through the application; tests run it directly). On a store without
//! timelines (`Store::timeline_threshold` is `None`) every job does nothing.
//!
//! - A follow or unfollow syncs the followee's side of the follow ("who follows me", kept
//!   with the followee, with the followee's follower count), then, if the follow stands and
//!   the followee is no celebrity, back-fills the followee's newest articles into the
//!   follower's timeline.
//! - When that sync moves the followee across the threshold (a follow brings the count to
//!   threshold + 1, an unfollow to the threshold), the job moves the followee between the
//!   two halves of the feed: a new celebrity's entries are removed from every follower's
//!   timeline (their articles are merged in at read time from then on, so none is counted
//!   twice), a former celebrity's newest articles are back-filled into every follower's.
//!   A retried job repeats the step, which is idempotent. A fan-out or back-fill that read
//!   the count before a crossing checks it again once its entries are written, and removes
//!   them if the author has become a celebrity meanwhile.
//! - A new article goes into each follower's timeline, [`FAN_OUT_PAGE`] followers at a time
//!   (the store batches each page per cluster), unless its author has more followers than
//!   the threshold: a celebrity's articles are merged into feeds at read time instead, so a
//!   post costs no write per follower.
//! - A deletion removes the article from every timeline.
//!
//! Every step is idempotent (a retried job adds nothing twice), and the store adds an entry
//! only while its owner follows its author, so a late job cannot bring back an unfollowed
//! author. [`run`] says which timelines changed and whether the set of celebrities did, for
//! the caller to invalidate what it caches of them.

use crate::jobs::FeedJob;
use crate::{ArticleFilter, Page, Store, StoreResult, TimelineEntry};
use crescendo_domain::Id;

/// Followers read and written per step of a fan-out.
pub const FAN_OUT_PAGE: u32 = 1_000;

/// What a feed job changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedOutcome {
    /// The owner of each timeline entry added or removed (an owner once per entry).
    pub timelines: Vec<Id>,
    /// Whether an author crossed the celebrity threshold, either way.
    pub celebrities_changed: bool,
    /// Every owner whose timeline the job added entries to or removed them from, or would
    /// have: a retried job finds the entries of its first run there already and adds none,
    /// but the first run may have failed before its caller invalidated what it caches of
    /// them (sorted, each once; a deletion's owners are those of `timelines`).
    pub owners: Vec<Id>,
}

impl FeedOutcome {
    /// How many timeline entries were added or removed.
    pub fn rows(&self) -> u64 {
        self.timelines.len() as u64
    }
}

/// Runs `job` on `s`, back-filling up to `back_fill` articles on a follow.
///
/// # Errors
/// The store's (the job is then retried).
pub async fn run(s: &dyn Store, job: FeedJob, back_fill: u32) -> StoreResult<FeedOutcome> {
    // each step decides from what the steps before it wrote, and a replica may not have it
    // yet: every read of a job is served by a primary
    let mut outcome = crate::fence::reading_after(u64::MAX, steps(s, job, back_fill)).await?;
    outcome.owners.extend(&outcome.timelines);
    outcome.owners.sort_unstable();
    outcome.owners.dedup();
    Ok(outcome)
}

/// [`run`]'s steps; the owners it names are completed by [`run`].
async fn steps(s: &dyn Store, job: FeedJob, back_fill: u32) -> StoreResult<FeedOutcome> {
    let Some(threshold) = s.timeline_threshold().await? else {
        return Ok(FeedOutcome::default());
    };
    let mut owners = Vec::new();
    let timelines = match job {
        FeedJob::Follow { follower, followee } => {
            let follows = s.sync_follower(follower, followee).await?;
            let followers = s.followers_count(followee).await?;
            if follows && followers == threshold + 1 {
                let gone = for_each_follower_page(s, followee, Step::Remove, &mut owners).await?;
                return Ok(crossed(gone, owners));
            }
            if !follows && followers == threshold {
                let step = Step::BackFill(back_fill);
                let added = for_each_follower_page(s, followee, step, &mut owners).await?;
                return Ok(crossed(added, owners));
            }
            if !follows || followers > threshold {
                Vec::new()
            } else {
                owners.push(follower);
                let entries = newest_for(s, followee, &[follower], back_fill).await?;
                let added = s.add_to_timelines(&entries).await?;
                undo_if_celebrity(s, followee, added, threshold).await?
            }
        }
        FeedJob::Publish { article, author } => {
            if s.followers_count(author).await? > threshold {
                Vec::new() // a celebrity: merged into feeds on read
            } else {
                let step = Step::Publish(article);
                let added = for_each_follower_page(s, author, step, &mut owners).await?;
                undo_if_celebrity(s, author, added, threshold).await?
            }
        }
        FeedJob::Unpublish { article } => s.remove_from_timelines(article).await?,
    };
    Ok(FeedOutcome {
        timelines,
        celebrities_changed: false,
        owners,
    })
}

/// After entries of `author` were `added`: if the author has crossed the threshold since
/// their count was read, the crossing's job may have removed their entries before these
/// were added, so they are removed here too (the count is read after the entries were
/// committed, so one of the two removals sees them). Returns the owners of the timelines
/// changed.
async fn undo_if_celebrity(
    s: &dyn Store,
    author: Id,
    mut added: Vec<Id>,
    threshold: u64,
) -> StoreResult<Vec<Id>> {
    if added.is_empty() || s.followers_count(author).await? <= threshold {
        return Ok(added);
    }
    let mut owners = added.clone();
    owners.sort_unstable();
    owners.dedup();
    added.extend(s.remove_author_from_timelines(author, &owners).await?);
    Ok(added)
}

fn crossed(timelines: Vec<Id>, owners: Vec<Id>) -> FeedOutcome {
    FeedOutcome {
        timelines,
        celebrities_changed: true,
        owners,
    }
}

/// Entries for `author`'s newest `back_fill` articles in each of `owners`' timelines.
async fn newest_for(
    s: &dyn Store,
    author: Id,
    owners: &[Id],
    back_fill: u32,
) -> StoreResult<Vec<TimelineEntry>> {
    let newest = s
        .list_article_ids(
            &ArticleFilter::Author(author),
            Page {
                limit: back_fill,
                offset: 0,
            },
        )
        .await?;
    Ok(owners
        .iter()
        .flat_map(|&owner| {
            newest.ids.iter().map(move |&article| TimelineEntry {
                owner,
                article,
                author,
            })
        })
        .collect())
}

/// What [`for_each_follower_page`] does to the timelines of a page of an author's followers.
#[derive(Clone, Copy)]
enum Step {
    /// Removes the author's entries (the author became a celebrity).
    Remove,
    /// Adds the author's newest articles, this many (the author is no celebrity any more).
    BackFill(u32),
    /// Adds this new article of the author's.
    Publish(Id),
}

/// Does `step` to the timelines of each page of `user`'s followers ([`FAN_OUT_PAGE`] at a
/// time), adding every follower to `owners`; the owners of the entries added or removed.
async fn for_each_follower_page(
    s: &dyn Store,
    user: Id,
    step: Step,
    owners: &mut Vec<Id>,
) -> StoreResult<Vec<Id>> {
    let mut after = None;
    let mut out = Vec::new();
    loop {
        let followers = s.followers_page(user, after, FAN_OUT_PAGE).await?;
        let Some(&last) = followers.last() else {
            return Ok(out);
        };
        owners.extend(&followers);
        out.extend(match step {
            Step::Remove => s.remove_author_from_timelines(user, &followers).await?,
            Step::BackFill(n) => {
                let entries = newest_for(s, user, &followers, n).await?;
                s.add_to_timelines(&entries).await?
            }
            Step::Publish(article) => {
                let entries: Vec<TimelineEntry> = followers
                    .iter()
                    .map(|&owner| TimelineEntry {
                        owner,
                        article,
                        author: user,
                    })
                    .collect();
                s.add_to_timelines(&entries).await?
            }
        });
        if followers.len() < FAN_OUT_PAGE as usize {
            return Ok(out);
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
