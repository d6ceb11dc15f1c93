//! Users and follows on a sharded store. A user's row lives on the cluster of its logical
//! shard; the catalogue's directory finds a user by username or email. A follow is stored on
//! both sides: whom a user follows (`follows`, the truth) with the follower, whose feed reads
//! it, and who follows a user (`followers`) with the followee, whose fan-out reads it. The
//! application adds a `FeedJob::Follow` to the follow's transaction; its worker calls
//! `sync_follower`, which copies the truth to the followee's side.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::catalogue;
use super::db::Shards;
use crate::db::{Db, map_err};
use crate::users;
use crescendo_domain::{Id, LogicalShard};
use crescendo_store::jobs::FeedJob;
use crescendo_store::outbox::PendingJob;
use crescendo_store::{NewUser, StoreError, StoreResult, UserChanges, UserRecord};

pub(crate) async fn create_user(s: &Shards, new: NewUser) -> StoreResult<UserRecord> {
    let shard = LogicalShard::for_new_user(&new.username);
    let (username, email) = (new.username.clone(), new.email.clone());
    catalogue::reserve(&s.catalogue, &username, &email, shard).await?;
    let user = match s
        .write(shard, |db| users::create_user(db, new.clone()))
        .await
    {
        Ok(u) => u,
        Err(e) => {
            // the sweep frees the reservation if this fails too
            let _ = catalogue::release(&s.catalogue, &username, &email).await;
            return Err(e);
        }
    };
    if !catalogue::confirm(&s.catalogue, &username, &email, user.id).await? {
        // a sweep freed the reservation and another sign-up took the name meanwhile
        undo_user(s, user.id).await?;
        return Err(StoreError::Conflict {
            constraint: "username",
        });
    }
    Ok(user)
}

/// Removes a user created on its cluster whose name the catalogue gave to someone else.
async fn undo_user(s: &Shards, id: Id) -> StoreResult<()> {
    let db = s.of(id);
    let mut tx = db.begin().await?;
    for sql in [
        "DELETE FROM usernames WHERE user_id = $1",
        "DELETE FROM emails WHERE user_id = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    db.commit(tx).await
}

pub(crate) async fn user_by_id(s: &Shards, id: Id) -> StoreResult<Option<UserRecord>> {
    users::user_by_id(s.of(id), id).await
}

pub(crate) async fn users_by_ids(s: &Shards, ids: &[Id]) -> StoreResult<Vec<UserRecord>> {
    s.on_groups(ids, |db, group| async move {
        users::users_by_ids(db, &group).await
    })
    .await
}

pub(crate) async fn user_by_email(s: &Shards, email: &str) -> StoreResult<Option<UserRecord>> {
    match catalogue::user_by_email(&s.catalogue, email).await? {
        Some(id) => users::user_by_id(s.of(id), id).await,
        None => Ok(None),
    }
}

pub(crate) async fn user_id_by_username(s: &Shards, username: &str) -> StoreResult<Option<Id>> {
    catalogue::user_by_username(&s.catalogue, username).await
}

pub(crate) async fn update_user(s: &Shards, id: Id, ch: UserChanges) -> StoreResult<UserRecord> {
    if ch.username.is_none() && ch.email.is_none() {
        return s
            .write(id.shard(), |db| users::update_user(db, id, ch.clone()))
            .await;
    }
    let before = users::user_by_id(s.of(id), id)
        .await?
        .ok_or(StoreError::NotFound)?;
    // the new name and email are held in the catalogue before the user's row changes, and
    // the old ones let go after
    catalogue::claim(
        &s.catalogue,
        id,
        ch.username.as_deref(),
        ch.email.as_deref(),
    )
    .await?;
    match s
        .write(id.shard(), |db| users::update_user(db, id, ch.clone()))
        .await
    {
        Ok(after) => {
            catalogue::keep_only(&s.catalogue, id, &after.username, &after.email).await?;
            Ok(after)
        }
        Err(e) => {
            let _ = catalogue::keep_only(&s.catalogue, id, &before.username, &before.email).await;
            Err(e)
        }
    }
}

/// Makes the follow on the follower's cluster, with a job that syncs the followee's side
/// and back-fills the follower's timeline in the same transaction.
pub(crate) async fn follow(s: &Shards, follower: Id, followee: Id) -> StoreResult<bool> {
    s.write(follower.shard(), |db| async move {
        let mut tx = db.begin_for(follower.shard()).await?;
        let new = sqlx::query(
            "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(follower.as_i64())
        .bind(followee.as_i64())
        .bind(crate::clock::now_ms())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected()
            == 1;
        db.commit_with(tx, sync_job(db, new, follower, followee))
            .await?;
        Ok(new)
    })
    .await
}

/// The job that syncs the followee's side of a follow that changed (none if it did not).
fn sync_job(db: &Db, changed: bool, follower: Id, followee: Id) -> Vec<PendingJob> {
    if !changed {
        return Vec::new();
    }
    db.feed_jobs(FeedJob::Follow { follower, followee })
}

/// Ends a follow and, in the same transaction on the follower's cluster, removes the
/// followee's articles from the follower's timeline.
pub(crate) async fn unfollow(s: &Shards, follower: Id, followee: Id) -> StoreResult<bool> {
    s.write(follower.shard(), |db| async move {
        let mut tx = db.begin_for(follower.shard()).await?;
        let gone = sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
            .bind(follower.as_i64())
            .bind(followee.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        sqlx::query("DELETE FROM timelines WHERE owner_id = $1 AND author_id = $2")
            .bind(follower.as_i64())
            .bind(followee.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        db.commit_with(tx, sync_job(db, gone == 1, follower, followee))
            .await?;
        Ok(gone == 1)
    })
    .await
}

/// The count kept in `follower_counts` by each sync: one row read, however many followers.
pub(crate) async fn followers_count(s: &Shards, user: Id) -> StoreResult<u64> {
    s.of(user)
        .read(|pool| async move {
            let n: Option<i64> =
                sqlx::query_scalar("SELECT followers FROM follower_counts WHERE followee_id = $1")
                    .bind(user.as_i64())
                    .fetch_optional(&pool)
                    .await
                    .map_err(map_err)?;
            Ok(n.unwrap_or(0) as u64)
        })
        .await
}

pub(crate) async fn followers_page(
    s: &Shards,
    user: Id,
    after: Option<Id>,
    limit: u32,
) -> StoreResult<Vec<Id>> {
    s.of(user)
        .read(|pool| async move {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT follower_id FROM followers WHERE followee_id = $1 AND follower_id > $2
                 ORDER BY follower_id LIMIT $3",
            )
            .bind(user.as_i64())
            .bind(after.map_or(i64::MIN, Id::as_i64))
            .bind(i64::from(limit))
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
            Ok(ids.into_iter().map(Id::from_i64).collect())
        })
        .await
}

/// Copies the truth (the follower's side) to the followee's side, then reads the truth
/// again and repeats until what it wrote still holds: whatever order the syncs of a follow
/// and its unfollow run in, the last one to finish leaves the side matching the truth.
pub(crate) async fn sync_follower(s: &Shards, follower: Id, followee: Id) -> StoreResult<bool> {
    let mut follows = users::follows(s.of(follower), follower, followee).await?;
    loop {
        s.write(followee.shard(), |db| {
            set_follower(db, followee, follower, follows)
        })
        .await?;
        let now = users::follows(s.of(follower), follower, followee).await?;
        if now == follows {
            return Ok(follows);
        }
        follows = now;
    }
}

/// Adds (`present`) or removes `follower` among `followee`'s followers, on the followee's
/// cluster, and moves the followee's count in `follower_counts` by the row that changed, in
/// the same transaction.
async fn set_follower(db: &Db, followee: Id, follower: Id, present: bool) -> StoreResult<()> {
    let (sql, count) = if present {
        (
            "INSERT INTO followers (followee_id, follower_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            "INSERT INTO follower_counts (followee_id, followers) VALUES ($1, 1)
             ON CONFLICT (followee_id) DO UPDATE SET followers = follower_counts.followers + 1",
        )
    } else {
        (
            "DELETE FROM followers WHERE followee_id = $1 AND follower_id = $2",
            "UPDATE follower_counts SET followers = followers - 1 WHERE followee_id = $1",
        )
    };
    let mut tx = db.begin_for(followee.shard()).await?;
    let changed = sqlx::query(sql)
        .bind(followee.as_i64())
        .bind(follower.as_i64())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
    if changed == 1 {
        sqlx::query(count)
            .bind(followee.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    db.commit(tx).await
}

pub(crate) async fn followees(s: &Shards, follower: Id) -> StoreResult<Vec<Id>> {
    users::followees(s.of(follower), follower).await
}
