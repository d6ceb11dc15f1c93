//! Conformance cases for users and their profiles: creation, lookups by ID, email and
//! username, unique keys, updates, and follows.

use super::user;
use crate::*;
use crescendo_domain::Id;

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

/// Changes built by `set` from none.
fn changes(set: impl FnOnce(&mut UserChanges)) -> UserChanges {
    let mut c = UserChanges::default();
    set(&mut c);
    c
}

/// Asserts that `result` is a conflict naming `constraint`.
fn assert_conflict(result: StoreResult<UserRecord>, constraint: &str) {
    match result {
        Err(StoreError::Conflict { constraint: c }) if c == constraint => {}
        other => panic!("a conflict on {constraint} expected: {other:?}"),
    }
}

/// A taken username (in any case) or email is a conflict naming it, and nothing is written.
pub async fn taken_usernames_and_emails_conflict_and_write_nothing(s: &dyn Store) {
    let jake = user(s, "jake").await;
    let new = |username: &str, email: &str| NewUser {
        username: username.into(),
        email: email.into(),
        password_hash: "h".into(),
    };
    assert_conflict(
        s.create_user(new("JAKE", "other@example.com")).await,
        "username",
    );
    assert_eq!(s.user_by_email("other@example.com").await.unwrap(), None);
    assert_conflict(
        s.create_user(new("other", "jake@example.com")).await,
        "email",
    );
    assert_eq!(s.user_id_by_username("other").await.unwrap(), None);

    let ann = user(s, "ann").await;
    let taken_name = changes(|c| {
        c.username = Some("Jake".into());
        c.bio = Some("x".into());
    });
    assert_conflict(s.update_user(ann.id, taken_name).await, "username");
    let taken_email = changes(|c| c.email = Some(jake.email.clone()));
    assert_conflict(s.update_user(ann.id, taken_email).await, "email");
    assert_eq!(
        s.user_by_id(ann.id).await.unwrap(),
        Some(ann),
        "a failed update must change nothing"
    );
}

/// Only the given fields change; a new username moves the directory entry.
pub async fn update_user_changes_only_given_fields(s: &dyn Store) {
    let u = user(s, "jake").await;
    let bio = changes(|c| c.bio = Some("I like dogs".into()));
    let v = s.update_user(u.id, bio).await.unwrap();
    let want = UserRecord {
        bio: "I like dogs".into(),
        ..u.clone()
    };
    assert_eq!(v, want);
    // changing only the case of one's own username is allowed
    let case = changes(|c| c.username = Some("Jake".into()));
    let w = s.update_user(u.id, case).await.unwrap();
    assert_eq!(w.username, "Jake");
    let most = changes(|c| {
        c.username = Some("jacob".into());
        c.email = Some("jacob@example.com".into());
        c.image = Some("https://img/j.png".into());
        c.password_hash = Some("new".into());
    });
    let w = s.update_user(u.id, most).await.unwrap();
    assert_eq!(
        [&w.username, &w.email, &w.image, &w.password_hash, &w.bio],
        [
            "jacob",
            "jacob@example.com",
            "https://img/j.png",
            "new",
            "I like dogs"
        ]
    );
    assert_eq!(s.user_id_by_username("jake").await.unwrap(), None);
    assert_eq!(s.user_id_by_username("jacob").await.unwrap(), Some(u.id));
    assert_eq!(s.user_by_email("jake@example.com").await.unwrap(), None);
    let jacob = s.user_by_email("jacob@example.com").await.unwrap();
    assert!(jacob.is_some());
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
