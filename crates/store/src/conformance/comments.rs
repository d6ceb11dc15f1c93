//! Conformance cases for comments on articles.

use super::{article, space, user};
use crate::*;
use crescendo_domain::Id;

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
