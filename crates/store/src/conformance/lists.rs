//! Conformance cases for article lists: order, totals, paging, filters, and popular tags.

use super::{all, article, user};
use crate::*;
use crescendo_domain::Id;

/// Lists are newest first and count every match, not the page.
pub async fn lists_are_newest_first_with_exact_totals(s: &dyn Store) {
    let u = user(s, "jake").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(article(s, u.id, &format!("a{i}"), &[]).await.id);
    }
    ids.reverse();
    for (page, want) in [
        (all(2, 0), ids[..2].to_vec()),
        (all(10, 4), ids[4..].to_vec()),
        (all(10, 50), vec![]),
        (all(0, 0), vec![]),
    ] {
        let got = s.list_article_ids(&ArticleFilter::All, page).await.unwrap();
        assert_eq!(
            got,
            IdPage {
                ids: want,
                total: 5
            },
            "{page:?}"
        );
    }
}

/// Walking the pages yields every article exactly once.
pub async fn pages_neither_repeat_nor_skip(s: &dyn Store) {
    let u = user(s, "jake").await;
    let mut want = Vec::new();
    for i in 0..23 {
        want.push(article(s, u.id, &format!("t{i}"), &["t"]).await.id);
    }
    want.reverse();
    for filter in [
        ArticleFilter::All,
        ArticleFilter::Tag("t".into()),
        ArticleFilter::Author(u.id),
    ] {
        let mut got = Vec::new();
        let mut offset = 0;
        loop {
            let page = s.list_article_ids(&filter, all(5, offset)).await.unwrap();
            assert_eq!(page.total, 23);
            if page.ids.is_empty() {
                break;
            }
            offset += page.ids.len() as u32;
            got.extend(page.ids);
        }
        assert_eq!(got, want, "{filter:?}");
    }
}

/// Each filter selects exactly its articles.
pub async fn list_filters_select_exactly_their_articles(s: &dyn Store) {
    let (a, b, c) = (user(s, "a").await, user(s, "b").await, user(s, "c").await);
    let a1 = article(s, a.id, "a1", &["rust", "db"]).await;
    let b1 = article(s, b.id, "b1", &["rust"]).await;
    let c1 = article(s, c.id, "c1", &["go"]).await;
    let a2 = article(s, a.id, "a2", &[]).await;
    // each filter with the articles it must list, all of them on one page
    let expect = |cases: Vec<(ArticleFilter, Vec<Id>)>| async move {
        for (filter, want) in cases {
            let page = s.list_article_ids(&filter, all(20, 0)).await.unwrap();
            let total = want.len() as u64;
            assert_eq!((page.ids, page.total), (want, total), "{filter:?}");
        }
    };
    expect(vec![
        (ArticleFilter::Tag("rust".into()), vec![b1.id, a1.id]),
        (ArticleFilter::Tag("none".into()), vec![]),
        (ArticleFilter::Author(a.id), vec![a2.id, a1.id]),
    ])
    .await;

    s.favorite(c.id, a1.id).await.unwrap();
    s.favorite(c.id, c1.id).await.unwrap();
    s.favorite(b.id, b1.id).await.unwrap();
    expect(vec![
        (ArticleFilter::FavoritedBy(c.id), vec![c1.id, a1.id]),
        (ArticleFilter::FavoritedBy(a.id), vec![]),
    ])
    .await;

    for (follower, followee) in [(c.id, a.id), (c.id, b.id), (a.id, c.id)] {
        s.follow(follower, followee).await.unwrap();
        // on a store with timelines, the feed shows what the follow's job back-filled
        super::timelines::run_follow_job(s, follower, followee).await;
    }
    let m =
        |tag: Option<&str>, author: Option<Id>, favorited_by: Option<Id>| ArticleFilter::Match {
            tag: tag.map(str::to_string),
            author,
            favorited_by,
        };
    expect(vec![
        (ArticleFilter::Feed(c.id), vec![a2.id, b1.id, a1.id]),
        (ArticleFilter::Feed(a.id), vec![c1.id]),
        (ArticleFilter::Feed(b.id), vec![]),
        (m(Some("rust"), Some(a.id), None), vec![a1.id]),
        (m(Some("rust"), None, Some(c.id)), vec![a1.id]),
        (m(None, Some(c.id), Some(c.id)), vec![c1.id]),
        (m(Some("go"), Some(a.id), Some(c.id)), vec![]),
    ])
    .await;
}

/// Popular tags: most used first, ties by name, bounded by the limit.
pub async fn popular_tags_are_ordered_by_use(s: &dyn Store) {
    let u = user(s, "a").await;
    assert_eq!(s.popular_tags(10).await.unwrap(), Vec::<String>::new());
    article(s, u.id, "1", &["b", "a"]).await;
    article(s, u.id, "2", &["b", "c"]).await;
    article(s, u.id, "3", &["b", "c"]).await;
    assert_eq!(s.popular_tags(10).await.unwrap(), vec!["b", "c", "a"]);
    assert_eq!(s.popular_tags(2).await.unwrap(), vec!["b", "c"]);
}
