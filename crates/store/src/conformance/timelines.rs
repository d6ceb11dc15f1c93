//! Conformance cases for both sides of a follow and for timelines (the feed by fan-out on
//! write, on stores that keep them).

use super::{all, article, user};
use crate::*;
use crescendo_domain::Id;

/// What the feed job of a follow does: sync the followee's side, then, on a store with
/// timelines, back-fill the followee's articles.
pub(crate) async fn run_follow_job(s: &dyn Store, follower: Id, followee: Id) {
    let job = jobs::FeedJob::Follow { follower, followee };
    crate::feed::run(s, job, 500).await.unwrap();
}

/// Once synced, the followee's side counts and pages the followers (keyset, ascending, no
/// repeats); an unfollow synced takes one away; syncing again changes nothing.
pub async fn followers_are_counted_and_paged_once_synced(s: &dyn Store) {
    let star = user(s, "star").await;
    let mut fans = Vec::new();
    for i in 0..5 {
        let f = user(s, &format!("fan{i}")).await;
        assert!(s.follow(f.id, star.id).await.unwrap());
        assert!(s.sync_follower(f.id, star.id).await.unwrap());
        fans.push(f.id);
    }
    fans.sort_unstable();
    assert_eq!(s.followers_count(star.id).await.unwrap(), 5);
    assert_eq!(s.followers_count(fans[0]).await.unwrap(), 0);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.followers_page(star.id, after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(&last) = page.last() else { break };
        seen.extend(page);
        after = Some(last);
    }
    assert_eq!(seen, fans);

    assert!(s.unfollow(fans[0], star.id).await.unwrap());
    assert!(!s.sync_follower(fans[0], star.id).await.unwrap());
    assert!(s.sync_follower(fans[1], star.id).await.unwrap(), "again");
    assert_eq!(s.followers_count(star.id).await.unwrap(), 4);
    assert_eq!(
        s.followers_page(star.id, None, 10).await.unwrap(),
        fans[1..].to_vec()
    );
}

/// On a store with timelines: an entry is added only for an owner who follows its author,
/// once; a timeline reads newest first with exact paging; an unfollow removes the author's
/// entries, and removing an article removes it from every timeline. Elsewhere timelines
/// stay empty.
pub async fn timelines_hold_followed_authors_articles_once(s: &dyn Store) {
    let [a, b, reader, stranger] = [
        user(s, "ta").await,
        user(s, "tb").await,
        user(s, "reader").await,
        user(s, "stranger").await,
    ];
    let a1 = article(s, a.id, "a1", &[]).await;
    let b1 = article(s, b.id, "b1", &[]).await;
    let a2 = article(s, a.id, "a2", &[]).await;
    s.follow(reader.id, a.id).await.unwrap();
    s.follow(reader.id, b.id).await.unwrap();
    let entries: Vec<TimelineEntry> = [(&a1, a.id), (&b1, b.id), (&a2, a.id)]
        .into_iter()
        .flat_map(|(art, author)| {
            [reader.id, stranger.id].map(|owner| TimelineEntry {
                owner,
                article: art.id,
                author,
            })
        })
        .collect();
    if s.timeline_threshold().await.unwrap().is_none() {
        assert!(s.add_to_timelines(&entries).await.unwrap().is_empty());
        assert!(s.celebrities().await.unwrap().is_empty());
        assert_eq!(s.timeline(reader.id, all(10, 0)).await.unwrap().total, 0);
        return;
    }
    assert_eq!(
        s.add_to_timelines(&entries).await.unwrap(),
        [reader.id; 3],
        "the reader's"
    );
    assert!(
        s.add_to_timelines(&entries).await.unwrap().is_empty(),
        "idempotent"
    );
    let t = s.timeline(reader.id, all(10, 0)).await.unwrap();
    assert_eq!((t.ids, t.total), (vec![a2.id, b1.id, a1.id], 3));
    assert_eq!(s.timeline(reader.id, all(1, 1)).await.unwrap().ids, [b1.id]);
    assert_eq!(s.timeline(stranger.id, all(10, 0)).await.unwrap().total, 0);

    s.unfollow(reader.id, a.id).await.unwrap();
    assert_eq!(
        s.timeline(reader.id, all(10, 0)).await.unwrap().ids,
        [b1.id],
        "an unfollow removes the author's entries"
    );
    assert!(
        s.add_to_timelines(&entries).await.unwrap().is_empty(),
        "not back"
    );
    s.follow(reader.id, a.id).await.unwrap();
    s.add_to_timelines(&entries).await.unwrap();
    assert_eq!(
        s.remove_author_from_timelines(a.id, &[reader.id, stranger.id])
            .await
            .unwrap(),
        [reader.id; 2],
        "an author's entries go from the owners named"
    );
    assert_eq!(s.remove_from_timelines(b1.id).await.unwrap(), [reader.id]);
    assert_eq!(s.timeline(reader.id, all(10, 0)).await.unwrap().total, 0);
}

/// A feed job run twice (a retry after its caller failed to invalidate) adds nothing the
/// second time, but still names every owner whose timeline it wrote for, so the caller
/// invalidates them again. On a store without timelines, a job names nobody.
pub async fn a_retried_feed_job_names_the_owners_it_wrote_for(s: &dyn Store) {
    let [author, f1, f2] = [
        user(s, "ra").await,
        user(s, "rf1").await,
        user(s, "rf2").await,
    ];
    for f in [&f1, &f2] {
        s.follow(f.id, author.id).await.unwrap();
        run_follow_job(s, f.id, author.id).await;
    }
    let post = article(s, author.id, "retried", &[]).await;
    let job = jobs::FeedJob::Publish {
        article: post.id,
        author: author.id,
    };
    let first = crate::feed::run(s, job, 500).await.unwrap();
    let again = crate::feed::run(s, job, 500).await.unwrap();
    if s.timeline_threshold().await.unwrap().is_none() {
        assert_eq!((first.owners.len(), again.owners.len()), (0, 0));
        return;
    }
    let mut both = vec![f1.id, f2.id];
    both.sort_unstable();
    assert_eq!(first.rows(), 2, "{first:?}");
    assert_eq!(again.rows(), 0, "a retry adds nothing twice: {again:?}");
    assert_eq!(first.owners, both);
    assert_eq!(again.owners, both, "and still names whom it wrote for");
}
