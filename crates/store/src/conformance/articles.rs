//! Conformance cases for articles and what hangs on them: fields, tags and slugs, updates,
//! favourites, and deletion.

use super::{all, article, user};
use crate::*;
use crescendo_domain::{Id, Slug};

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
