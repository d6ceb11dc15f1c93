//! Behaviour every `Store` backend must show. Each case takes a fresh, empty store.
//!
//! A backend runs the whole suite from its tests with
//! `crescendo_store::store_conformance_tests!(async { (guard, Arc<dyn Store>) })`, where
//! `guard` keeps the backend's resources (a temp dir, a server) alive for the test.
//!
//! The cases panic with a message on the first difference, like assertions in any test.

use crate::*;
use crescendo_domain::{Id, Slug};

/// Generates one `#[tokio::test]` per conformance case, each on a store made by `$make`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__store_conformance_cases!($make;
            users_round_trip,
            taken_usernames_and_emails_conflict_and_write_nothing,
            update_user_changes_only_given_fields,
            follows_are_idempotent,
            articles_round_trip_with_sorted_unique_tags,
            equal_titles_get_distinct_slugs,
            updating_a_title_moves_the_slug,
            lists_are_newest_first_with_exact_totals,
            pages_neither_repeat_nor_skip,
            list_filters_select_exactly_their_articles,
            favorites_are_counted_once,
            deleting_an_article_removes_what_hangs_on_it,
            comments_round_trip,
            popular_tags_are_ordered_by_use,
            uploads_come_with_their_job_and_settle_once
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $make.await;
                $crate::conformance::$case(&*store).await;
            }
        )*
    };
}

async fn user(s: &dyn Store, name: &str) -> UserRecord {
    s.create_user(NewUser {
        username: name.into(),
        email: format!("{}@example.com", name.to_lowercase()),
        password_hash: "$argon2id$fake".into(),
    })
    .await
    .expect("create user")
}

/// IDs are time-ordered at millisecond resolution; within one millisecond a backend may order
/// them by something else (PostgreSQL's `next_id` by a sequence that wraps). The cases space
/// their creations by 2 ms so that creation order is ID order on every backend.
async fn space() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

async fn article(s: &dyn Store, author: Id, title: &str, tags: &[&str]) -> ArticleRecord {
    space().await;
    s.create_article(NewArticle {
        author_id: author,
        title: title.into(),
        description: format!("about {title}"),
        body: format!("body of {title}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        cover_image: String::new(),
    })
    .await
    .expect("create article")
}

fn all(limit: u32, offset: u32) -> Page {
    Page { limit, offset }
}

/// Users come back by ID, email and (case-insensitive) username.
pub async fn users_round_trip(s: &dyn Store) {
    let u = user(s, "Jake").await;
    assert_eq!(u.username, "Jake");
    assert_eq!(u.bio, "");
    assert_eq!(u.image, "");
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(
        s.user_by_email("jake@example.com").await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(s.user_id_by_username("jake").await.unwrap(), Some(u.id));
    assert_eq!(s.user_id_by_username("JAKE").await.unwrap(), Some(u.id));
    assert_eq!(s.user_id_by_username("nobody").await.unwrap(), None);
    let v = user(s, "Ann").await;
    let mut got = s
        .users_by_ids(&[u.id, v.id, Id::from_i64(1)])
        .await
        .unwrap();
    got.sort_by_key(|r| r.id);
    let mut want = vec![u.clone(), v];
    want.sort_by_key(|r| r.id);
    assert_eq!(got, want);
    assert_eq!(
        u.id.shard(),
        crescendo_domain::LogicalShard::for_new_user("Jake")
    );
    s.ping().await.unwrap();
}

/// A taken username (in any case) or email is a conflict naming it, and nothing is written.
pub async fn taken_usernames_and_emails_conflict_and_write_nothing(s: &dyn Store) {
    let jake = user(s, "jake").await;
    let err = s
        .create_user(NewUser {
            username: "JAKE".into(),
            email: "other@example.com".into(),
            password_hash: "h".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "username"
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.user_by_email("other@example.com").await.unwrap(), None);
    let err = s
        .create_user(NewUser {
            username: "other".into(),
            email: "jake@example.com".into(),
            password_hash: "h".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "email"
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.user_id_by_username("other").await.unwrap(), None);

    let ann = user(s, "ann").await;
    let err = s
        .update_user(
            ann.id,
            UserChanges {
                username: Some("Jake".into()),
                bio: Some("x".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "username"
            }
        ),
        "{err:?}"
    );
    let err = s
        .update_user(
            ann.id,
            UserChanges {
                email: Some(jake.email.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                constraint: "email"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        s.user_by_id(ann.id).await.unwrap(),
        Some(ann),
        "a failed update must change nothing"
    );
}

/// Only the given fields change; a new username moves the directory entry.
pub async fn update_user_changes_only_given_fields(s: &dyn Store) {
    let u = user(s, "jake").await;
    let v = s
        .update_user(
            u.id,
            UserChanges {
                bio: Some("I like dogs".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        v,
        UserRecord {
            bio: "I like dogs".into(),
            ..u.clone()
        }
    );
    // changing only the case of one's own username is allowed
    let w = s
        .update_user(
            u.id,
            UserChanges {
                username: Some("Jake".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(w.username, "Jake");
    let w = s
        .update_user(
            u.id,
            UserChanges {
                username: Some("jacob".into()),
                email: Some("jacob@example.com".into()),
                image: Some("https://img/j.png".into()),
                password_hash: Some("new".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            w.username.as_str(),
            w.email.as_str(),
            w.image.as_str(),
            w.password_hash.as_str(),
            w.bio.as_str()
        ),
        (
            "jacob",
            "jacob@example.com",
            "https://img/j.png",
            "new",
            "I like dogs"
        )
    );
    assert_eq!(s.user_id_by_username("jake").await.unwrap(), None);
    assert_eq!(s.user_id_by_username("jacob").await.unwrap(), Some(u.id));
    assert_eq!(s.user_by_email("jake@example.com").await.unwrap(), None);
    assert!(
        s.user_by_email("jacob@example.com")
            .await
            .unwrap()
            .is_some()
    );
    let missing = s
        .update_user(Id::from_i64(5), UserChanges::default())
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound), "{missing:?}");
}

/// Following twice is one follow; unfollowing what is not followed is a no-op.
pub async fn follows_are_idempotent(s: &dyn Store) {
    let (a, b, c) = (user(s, "a").await, user(s, "b").await, user(s, "c").await);
    assert!(s.follow(a.id, b.id).await.unwrap());
    assert!(!s.follow(a.id, b.id).await.unwrap());
    assert!(s.follow(a.id, c.id).await.unwrap());
    let mut f = s.followees(a.id).await.unwrap();
    f.sort();
    let mut want = vec![b.id, c.id];
    want.sort();
    assert_eq!(f, want);
    assert_eq!(s.followees(b.id).await.unwrap(), vec![]);
    assert!(s.unfollow(a.id, b.id).await.unwrap());
    assert!(!s.unfollow(a.id, b.id).await.unwrap());
    assert_eq!(s.followees(a.id).await.unwrap(), vec![c.id]);
}

/// Articles keep their fields, sorted unique tags, author's shard and an ID-bearing slug.
pub async fn articles_round_trip_with_sorted_unique_tags(s: &dyn Store) {
    let u = user(s, "jake").await;
    let a = article(
        s,
        u.id,
        "How to train your dragon",
        &["training", "dragons", "training"],
    )
    .await;
    assert_eq!(a.tags, vec!["dragons", "training"]);
    assert_eq!(a.author_id, u.id);
    assert_eq!(
        a.id.shard(),
        u.id.shard(),
        "an article lives on its author's shard"
    );
    assert!(
        a.slug.starts_with("how-to-train-your-dragon-"),
        "{}",
        a.slug
    );
    assert_eq!(Slug::parse(&a.slug).map(Slug::id), Some(a.id));
    assert_eq!(a.created_at, a.updated_at);
    assert_eq!(a.favorites_count, 0);
    assert_eq!(
        s.articles_by_ids(&[a.id, Id::from_i64(3)]).await.unwrap(),
        vec![a.clone()]
    );
    let b = article(s, u.id, "Second", &[]).await;
    assert!(b.id > a.id, "IDs are time-ordered");
    assert!(b.tags.is_empty());
}

/// Two articles may share a title; their slugs differ.
pub async fn equal_titles_get_distinct_slugs(s: &dyn Store) {
    let u = user(s, "jake").await;
    let a = article(s, u.id, "Same", &[]).await;
    let b = article(s, u.id, "Same", &[]).await;
    assert_ne!(a.slug, b.slug);
    assert_ne!(a.id, b.id);
}

/// A new title gives a new slug; other fields and tags change only when given.
pub async fn updating_a_title_moves_the_slug(s: &dyn Store) {
    let u = user(s, "jake").await;
    let a = article(s, u.id, "Old title", &["x"]).await;
    let b = s
        .update_article(
            a.id,
            ArticleChanges {
                title: Some("New title".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(b.slug.starts_with("new-title-"), "{}", b.slug);
    assert_eq!(Slug::parse(&b.slug).map(Slug::id), Some(a.id));
    assert_eq!(
        (b.body.as_str(), b.description.as_str(), b.tags.clone()),
        (a.body.as_str(), a.description.as_str(), a.tags.clone())
    );
    assert!(b.updated_at >= a.updated_at);
    assert_eq!(b.created_at, a.created_at);
    let c = s
        .update_article(
            a.id,
            ArticleChanges {
                body: Some("new body".into()),
                tags: Some(vec!["z".into(), "y".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.body, "new body");
    assert_eq!(c.tags, vec!["y", "z"]);
    assert_eq!(c.slug, b.slug);
    let page = s
        .list_article_ids(&ArticleFilter::Tag("x".into()), all(10, 0))
        .await
        .unwrap();
    assert_eq!(page.total, 0, "old tags are gone");
    assert_eq!(c.cover_image, "");
    let d = s
        .update_article(
            a.id,
            ArticleChanges {
                cover_image: Some("/media/uploads/1/1280.jpg".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(d.cover_image, "/media/uploads/1/1280.jpg");
    assert_eq!(
        s.articles_by_ids(&[a.id]).await.unwrap()[0].cover_image,
        "/media/uploads/1/1280.jpg",
        "stored"
    );
    assert_eq!(d.body, "new body");
    let err = s
        .update_article(Id::from_i64(77), ArticleChanges::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

/// Lists are newest first and count every match, not the page.
pub async fn lists_are_newest_first_with_exact_totals(s: &dyn Store) {
    let u = user(s, "jake").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(article(s, u.id, &format!("a{i}"), &[]).await.id);
    }
    ids.reverse();
    let page = s
        .list_article_ids(&ArticleFilter::All, all(2, 0))
        .await
        .unwrap();
    assert_eq!(
        page,
        IdPage {
            ids: ids[..2].to_vec(),
            total: 5
        }
    );
    let page = s
        .list_article_ids(&ArticleFilter::All, all(10, 4))
        .await
        .unwrap();
    assert_eq!(
        page,
        IdPage {
            ids: ids[4..].to_vec(),
            total: 5
        }
    );
    let page = s
        .list_article_ids(&ArticleFilter::All, all(10, 50))
        .await
        .unwrap();
    assert_eq!(
        page,
        IdPage {
            ids: vec![],
            total: 5
        }
    );
    let page = s
        .list_article_ids(&ArticleFilter::All, all(0, 0))
        .await
        .unwrap();
    assert_eq!(
        page,
        IdPage {
            ids: vec![],
            total: 5
        }
    );
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
    let ids = |p: IdPage| (p.ids, p.total);
    let q = |f: ArticleFilter| async move { s.list_article_ids(&f, all(20, 0)).await.unwrap() };

    assert_eq!(
        ids(q(ArticleFilter::Tag("rust".into())).await),
        (vec![b1.id, a1.id], 2)
    );
    assert_eq!(ids(q(ArticleFilter::Tag("none".into())).await), (vec![], 0));
    assert_eq!(
        ids(q(ArticleFilter::Author(a.id)).await),
        (vec![a2.id, a1.id], 2)
    );

    s.favorite(c.id, a1.id).await.unwrap();
    s.favorite(c.id, c1.id).await.unwrap();
    s.favorite(b.id, b1.id).await.unwrap();
    assert_eq!(
        ids(q(ArticleFilter::FavoritedBy(c.id)).await),
        (vec![c1.id, a1.id], 2)
    );
    assert_eq!(ids(q(ArticleFilter::FavoritedBy(a.id)).await), (vec![], 0));

    s.follow(c.id, a.id).await.unwrap();
    s.follow(c.id, b.id).await.unwrap();
    s.follow(a.id, c.id).await.unwrap();
    assert_eq!(
        ids(q(ArticleFilter::Feed(c.id)).await),
        (vec![a2.id, b1.id, a1.id], 3)
    );
    assert_eq!(ids(q(ArticleFilter::Feed(a.id)).await), (vec![c1.id], 1));
    assert_eq!(ids(q(ArticleFilter::Feed(b.id)).await), (vec![], 0));

    let m =
        |tag: Option<&str>, author: Option<Id>, favorited_by: Option<Id>| ArticleFilter::Match {
            tag: tag.map(str::to_string),
            author,
            favorited_by,
        };
    assert_eq!(
        ids(q(m(Some("rust"), Some(a.id), None)).await),
        (vec![a1.id], 1)
    );
    assert_eq!(
        ids(q(m(Some("rust"), None, Some(c.id))).await),
        (vec![a1.id], 1)
    );
    assert_eq!(
        ids(q(m(None, Some(c.id), Some(c.id))).await),
        (vec![c1.id], 1)
    );
    assert_eq!(
        ids(q(m(Some("go"), Some(a.id), Some(c.id))).await),
        (vec![], 0)
    );
}

/// A favourite counts once per user; unknown articles are not found.
pub async fn favorites_are_counted_once(s: &dyn Store) {
    let (a, b) = (user(s, "a").await, user(s, "b").await);
    let art = article(s, a.id, "x", &[]).await;
    assert!(s.favorite(b.id, art.id).await.unwrap());
    assert!(!s.favorite(b.id, art.id).await.unwrap());
    assert!(s.favorite(a.id, art.id).await.unwrap());
    assert_eq!(
        s.articles_by_ids(&[art.id]).await.unwrap()[0].favorites_count,
        2
    );
    assert_eq!(s.favorite_ids(b.id).await.unwrap(), vec![art.id]);
    assert!(s.unfavorite(b.id, art.id).await.unwrap());
    assert!(!s.unfavorite(b.id, art.id).await.unwrap());
    assert_eq!(
        s.articles_by_ids(&[art.id]).await.unwrap()[0].favorites_count,
        1
    );
    assert_eq!(s.favorite_ids(b.id).await.unwrap(), vec![]);
    let err = s.favorite(b.id, Id::from_i64(123)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

/// Deleting an article deletes its tags, favourites and comments with it.
pub async fn deleting_an_article_removes_what_hangs_on_it(s: &dyn Store) {
    let (a, b) = (user(s, "a").await, user(s, "b").await);
    let keep = article(s, a.id, "keep", &["t"]).await;
    let gone = article(s, a.id, "gone", &["t", "only"]).await;
    s.favorite(b.id, gone.id).await.unwrap();
    s.favorite(b.id, keep.id).await.unwrap();
    s.create_comment(gone.id, b.id, "hi".into()).await.unwrap();
    assert!(s.delete_article(gone.id).await.unwrap());
    assert!(!s.delete_article(gone.id).await.unwrap());
    assert_eq!(s.articles_by_ids(&[gone.id]).await.unwrap(), vec![]);
    assert_eq!(s.favorite_ids(b.id).await.unwrap(), vec![keep.id]);
    assert_eq!(s.comments_for(gone.id).await.unwrap(), vec![]);
    let page = s
        .list_article_ids(&ArticleFilter::Tag("t".into()), all(10, 0))
        .await
        .unwrap();
    assert_eq!(
        page,
        IdPage {
            ids: vec![keep.id],
            total: 1
        }
    );
    assert_eq!(s.popular_tags(10).await.unwrap(), vec!["t"]);
}

/// Comments come back oldest first, are found by ID within their article, and delete.
pub async fn comments_round_trip(s: &dyn Store) {
    let (a, b) = (user(s, "a").await, user(s, "b").await);
    let art = article(s, a.id, "x", &[]).await;
    let other = article(s, a.id, "y", &[]).await;
    let c1 = s
        .create_comment(art.id, b.id, "first".into())
        .await
        .unwrap();
    space().await;
    let c2 = s
        .create_comment(art.id, a.id, "second".into())
        .await
        .unwrap();
    assert!(c2.id > c1.id);
    assert!(c1.id.as_i64() < (1 << 53));
    assert_eq!(
        (c1.article_id, c1.author_id, c1.body.as_str()),
        (art.id, b.id, "first")
    );
    assert_eq!(
        s.comments_for(art.id).await.unwrap(),
        vec![c1.clone(), c2.clone()]
    );
    assert_eq!(s.comment(art.id, c1.id).await.unwrap(), Some(c1.clone()));
    assert_eq!(
        s.comment(other.id, c1.id).await.unwrap(),
        None,
        "a comment belongs to one article"
    );
    assert!(!s.delete_comment(other.id, c1.id).await.unwrap());
    assert!(s.delete_comment(art.id, c1.id).await.unwrap());
    assert_eq!(s.comments_for(art.id).await.unwrap(), vec![c2]);
    let err = s
        .create_comment(Id::from_i64(9), a.id, "x".into())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
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

/// An upload is recorded with its job in the outbox; relays hold entries while they publish
/// them; an upload settles once.
pub async fn uploads_come_with_their_job_and_settle_once(s: &dyn Store) {
    let u = user(s, "Pat").await;
    let up = s
        .create_upload(
            NewUpload {
                owner_id: u.id,
                mime: "image/png".into(),
                original: "originals/a".into(),
                width: 40,
                height: 20,
            },
            "images.variants",
        )
        .await
        .unwrap();
    assert_eq!(up.state, UploadState::Processing);
    assert_eq!(
        up.id.shard(),
        u.id.shard(),
        "an upload lives on its owner's shard"
    );
    assert_eq!(s.upload(up.id).await.unwrap(), Some(up.clone()));
    assert_eq!(s.upload(Id::from_i64(1)).await.unwrap(), None);
    let second = s
        .create_upload(
            NewUpload {
                owner_id: u.id,
                mime: "image/jpeg".into(),
                original: "originals/b".into(),
                width: 1,
                height: 1,
            },
            "images.variants",
        )
        .await
        .unwrap();

    let claimed = s.claim_outbox(10, 60_000).await.unwrap();
    let payloads: Vec<String> = claimed
        .iter()
        .map(|e| String::from_utf8(e.payload.clone()).unwrap())
        .collect();
    assert_eq!(
        payloads,
        [up.id.as_i64().to_string(), second.id.as_i64().to_string()]
    );
    assert!(claimed.iter().all(|e| e.queue == "images.variants"));
    assert!(
        s.claim_outbox(10, 60_000).await.unwrap().is_empty(),
        "held entries are not handed out twice"
    );
    s.remove_outbox(&[claimed[0].id, claimed[1].id])
        .await
        .unwrap();
    // an entry whose lease ran out (its relay died before removing it) is handed out again
    let third = s
        .create_upload(
            NewUpload {
                owner_id: u.id,
                mime: "image/gif".into(),
                original: "originals/c".into(),
                width: 2,
                height: 2,
            },
            "images.variants",
        )
        .await
        .unwrap();
    let first_try = s.claim_outbox(10, 1).await.unwrap();
    assert_eq!(first_try.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let retry = s.claim_outbox(10, 60_000).await.unwrap();
    assert_eq!(retry, first_try, "{}", third.id);
    s.remove_outbox(&[retry[0].id]).await.unwrap();
    assert!(s.claim_outbox(10, 0).await.unwrap().is_empty());

    assert!(
        s.settle_upload(up.id, UploadState::Ready, None)
            .await
            .unwrap()
    );
    assert!(
        !s.settle_upload(up.id, UploadState::Failed, Some("late".into()))
            .await
            .unwrap(),
        "settled once"
    );
    assert_eq!(
        s.upload(up.id).await.unwrap().unwrap().state,
        UploadState::Ready
    );
    assert!(
        s.settle_upload(second.id, UploadState::Failed, Some("not an image".into()))
            .await
            .unwrap()
    );
    let failed = s.upload(second.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.state, failed.reason.as_deref()),
        (UploadState::Failed, Some("not an image"))
    );
}
