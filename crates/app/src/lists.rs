//! Article lists: which IDs a list shows, served from cached list heads where possible.
//!
//! This is the one place that knows how cross-user lists are put together, and so the place
//! that becomes scatter-gather when users are spread over several shard groups:
//! - the global list and tag lists read one head each (on a sharded store, the store merges
//!   every cluster's);
//! - the feed is already a merge: the viewer's followees' author heads, merged newest first;
//!   an author whose cluster is down is left out and the answer is marked partial. On a
//!   store that keeps timelines (fan-out on write), it is the viewer's cached timeline head
//!   merged with the heads of the celebrities they follow (`timelines`).
//!
//! A partial answer (`crescendo_store::fence::partial`) is never cached: not as a head, not
//! as a page snapshot.
//!
//! A head is the newest [`HEAD_LEN`] IDs of a list plus the list's total, cached and
//! invalidated by every write that adds or removes a member. A window that ends within
//! the head is exact; a deeper one goes to the store.

use crate::articles::{ArticleView, SharedArticle};
use crate::{App, AppError, AppResult, keys};
use crescendo_cache::Stamp;
use crescendo_domain::Id;
use crescendo_store::{ArticleFilter, IdPage, Page};
use futures_util::future::{join_all, try_join_all};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// How many of the newest IDs a cached list head keeps.
pub(crate) const HEAD_LEN: u32 = 500;

/// Feeds of viewers who follow more authors than this are read from the store in one
/// query instead of merging one cached head per author.
pub(crate) const MAX_MERGED_AUTHORS: usize = 500;

/// How many hydrated windows are kept, and the deepest offset they cover: the first pages
/// are read far more than the rest, and the bound keeps the memory small.
pub(crate) const PAGE_SNAPSHOTS: u64 = 2_000;
const SNAPSHOT_MAX_OFFSET: u32 = 200;

/// A window of a cached list head with its records already looked up: one cache read
/// instead of one per article and author. It was read from several cache keys (the head,
/// each article, each author) and is valid while none of them has been invalidated since:
/// it holds a stamp of each, taken before the key was read.
pub(crate) struct PageSnapshot {
    stamps: Vec<Stamp>,
    /// How many articles the whole list has.
    pub(crate) total: u64,
    /// The window's articles, newest first, each with its author.
    pub(crate) items: Vec<SharedArticle>,
}

fn window(head: &IdPage, page: Page) -> IdPage {
    let start = (page.offset as usize).min(head.ids.len());
    let end = (start + page.limit as usize).min(head.ids.len());
    IdPage {
        ids: head.ids[start..end].to_vec(),
        total: head.total,
    }
}

/// Merges lists sorted newest first, keeping the first `n` distinct IDs (an ID in several
/// lists is kept once).
pub(crate) fn merge_newest(lists: &[Arc<IdPage>], n: usize) -> Vec<Id> {
    let mut heap: BinaryHeap<(Id, Reverse<usize>, usize)> = BinaryHeap::new();
    for (i, l) in lists.iter().enumerate() {
        if let Some(&first) = l.ids.first() {
            heap.push((first, Reverse(i), 0));
        }
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let Some((id, Reverse(i), pos)) = heap.pop() else {
            break;
        };
        // equal IDs pop one after the other: the merge is in order
        if out.last() != Some(&id) {
            out.push(id);
        }
        if let Some(&next) = lists[i].ids.get(pos + 1) {
            heap.push((next, Reverse(i), pos + 1));
        }
    }
    out
}

/// Notes the cache keys a list's answer depends on beyond those it read through the cache
/// (see `crescendo_cache::surrogate`): the list's own keys, however deep the window (one
/// past the head is read from the store), and every article and author listed (a page
/// snapshot's are not read again).
pub(crate) fn note_list(filter: &ArticleFilter, items: &[ArticleView]) {
    use crescendo_cache::surrogate::note;
    match filter {
        ArticleFilter::All => note(&keys::head_all()),
        ArticleFilter::Tag(t) => note(&keys::head_tag(t)),
        ArticleFilter::Author(a) => note(&keys::head_author(*a)),
        ArticleFilter::FavoritedBy(f) => note(&keys::favorites(*f)),
        ArticleFilter::Feed(_) => {}
        ArticleFilter::Match {
            tag,
            author,
            favorited_by,
        } => {
            if let Some(t) = tag {
                note(&keys::head_tag(t));
            }
            if let Some(a) = author {
                note(&keys::head_author(*a));
            }
            if let Some(f) = favorited_by {
                note(&keys::favorites(*f));
            }
        }
    }
    for v in items {
        note(&keys::article(v.article.id));
        note(&keys::profile(v.author.profile.id));
    }
}

impl App {
    async fn head(&self, key: String, filter: ArticleFilter) -> AppResult<Arc<IdPage>> {
        let head = self
            .cached(&key, || async {
                let page = Page {
                    limit: HEAD_LEN,
                    offset: 0,
                };
                Ok::<_, AppError>(Some(self.store().list_article_ids(&filter, page).await?))
            })
            .await?;
        Ok(head.unwrap_or_default())
    }

    /// An author's cached head.
    pub(crate) async fn author_head(&self, author: Id) -> AppResult<Arc<IdPage>> {
        self.head(keys::head_author(author), ArticleFilter::Author(author))
            .await
    }

    /// The IDs in a window of a list, and the list's total.
    pub(crate) async fn list_ids(&self, filter: &ArticleFilter, page: Page) -> AppResult<IdPage> {
        if !self.caching() {
            // nothing to keep a head in: one query for the window and its total
            return Ok(self.store().list_article_ids(filter, page).await?);
        }
        let within_head = u64::from(page.offset) + u64::from(page.limit) <= u64::from(HEAD_LEN);
        let key = match filter {
            ArticleFilter::All => Some(keys::head_all()),
            ArticleFilter::Tag(t) => Some(keys::head_tag(t)),
            ArticleFilter::Author(a) => Some(keys::head_author(*a)),
            ArticleFilter::Feed(viewer) if within_head => {
                return if self.feeds_by_fan_out().await? {
                    self.timeline_feed_ids(*viewer, page).await
                } else {
                    self.feed_ids(*viewer, page).await
                };
            }
            _ => None,
        };
        match key {
            Some(key) if within_head => Ok(window(&*self.head(key, filter.clone()).await?, page)),
            _ => Ok(self.store().list_article_ids(filter, page).await?),
        }
    }

    /// The hydrated window of a list that has a cached head, or `None` for lists without
    /// one and windows deeper than snapshots go.
    pub(crate) async fn head_page(
        &self,
        filter: &ArticleFilter,
        page: Page,
    ) -> AppResult<Option<Arc<PageSnapshot>>> {
        if !self.caching() || self.travelled() {
            return Ok(None);
        }
        let head_key = match filter {
            ArticleFilter::All => keys::head_all(),
            ArticleFilter::Tag(t) => keys::head_tag(t),
            ArticleFilter::Author(a) => keys::head_author(*a),
            _ => return Ok(None),
        };
        if page.offset > SNAPSHOT_MAX_OFFSET || page.offset + page.limit > HEAD_LEN {
            return Ok(None);
        }
        let key = format!("{head_key}|{}|{}", page.limit, page.offset);
        // a request with a raised read fence checks the versions; others may trust reports
        if let Some(snap) = self.inner.pages.get(&key)
            && ((!self.checks_near_copies() && self.cache().stamps_unreported(&snap.stamps))
                || self.cache().stamps_current(&snap.stamps).await)
        {
            return Ok(Some(snap));
        }
        // every key is stamped before it is read; see Stamp
        let cache = self.cache();
        let mut stamps = cache.stamps(vec![head_key]).await;
        let ids = self.list_ids(filter, page).await?;
        stamps.extend(
            cache
                .stamps(ids.ids.iter().map(|&id| keys::article(id)).collect())
                .await,
        );
        let articles: Vec<_> = try_join_all(ids.ids.iter().map(|&id| self.article_record(id)))
            .await?
            .into_iter()
            .flatten()
            .collect();
        stamps.extend(
            cache
                .stamps(
                    articles
                        .iter()
                        .map(|a| keys::profile(a.author_id))
                        .collect(),
                )
                .await,
        );
        let authors =
            try_join_all(articles.iter().map(|a| self.profile_record(a.author_id))).await?;
        let items = articles
            .into_iter()
            .zip(authors)
            .filter_map(|(article, author)| Some((article, author?)))
            .collect();
        let snap = Arc::new(PageSnapshot {
            stamps,
            total: ids.total,
            items,
        });
        if !crescendo_store::fence::partial() {
            self.inner.pages.insert(key, Arc::clone(&snap));
        }
        Ok(Some(snap))
    }

    /// The feed: the viewer's followees' author heads, merged newest first.
    async fn feed_ids(&self, viewer: Id, page: Page) -> AppResult<IdPage> {
        let followees = self.followees(viewer).await?;
        if followees.len() > MAX_MERGED_AUTHORS {
            return Ok(self
                .store()
                .list_article_ids(&ArticleFilter::Feed(viewer), page)
                .await?);
        }
        // an author whose cluster is down is left out, and the feed says it is partial
        let mut heads = Vec::with_capacity(followees.len());
        let mut unavailable = 0;
        for head in join_all(followees.iter().map(|&author| self.author_head(author))).await {
            match head {
                Ok(h) => heads.push(h),
                Err(AppError::Unavailable) => unavailable += 1,
                Err(e) => return Err(e),
            }
        }
        if unavailable > 0 {
            if heads.is_empty() {
                return Err(AppError::Unavailable);
            }
            crescendo_store::fence::note_partial();
        }
        let total = heads.iter().map(|h| h.total).sum();
        // Each head holds an author's newest HEAD_LEN IDs and offset + limit <= HEAD_LEN, so
        // every ID of the merged window is in some head: the window is exact.
        let n = (page.offset + page.limit) as usize;
        let merged = merge_newest(&heads, n);
        let ids = merged.into_iter().skip(page.offset as usize).collect();
        Ok(IdPage { ids, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[i64]) -> Arc<IdPage> {
        Arc::new(IdPage {
            ids: ids.iter().map(|&i| Id::from_i64(i)).collect(),
            total: ids.len() as u64,
        })
    }

    #[test]
    fn merging_keeps_the_newest_in_order() {
        let lists = [page(&[9, 5, 1]), page(&[8, 7, 2]), page(&[]), page(&[6])];
        let got: Vec<i64> = merge_newest(&lists, 5)
            .into_iter()
            .map(Id::as_i64)
            .collect();
        assert_eq!(got, vec![9, 8, 7, 6, 5]);
        let all: Vec<i64> = merge_newest(&lists, 100)
            .into_iter()
            .map(Id::as_i64)
            .collect();
        assert_eq!(all, vec![9, 8, 7, 6, 5, 2, 1]);
    }

    #[test]
    fn merging_keeps_an_id_found_in_several_lists_once() {
        let lists = [page(&[9, 7, 4]), page(&[9, 8, 4, 2]), page(&[7])];
        let got: Vec<i64> = merge_newest(&lists, 5)
            .into_iter()
            .map(Id::as_i64)
            .collect();
        assert_eq!(got, vec![9, 8, 7, 4, 2]);
    }

    #[test]
    fn windows_clip_to_the_head() {
        let h = IdPage {
            ids: (1..=10).rev().map(Id::from_i64).collect(),
            total: 42,
        };
        let w = window(
            &h,
            Page {
                limit: 3,
                offset: 8,
            },
        );
        assert_eq!(w.ids, vec![Id::from_i64(2), Id::from_i64(1)]);
        assert_eq!(w.total, 42);
        assert!(
            window(
                &h,
                Page {
                    limit: 3,
                    offset: 20
                }
            )
            .ids
            .is_empty()
        );
    }
}
