//! Users and follows on a sharded store. A user's row lives on the cluster of its logical
//! shard; the catalogue's directory finds a user by username or email. A follow lives with
//! the follower, whose feed reads it.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::catalogue;
use super::db::Shards;
use crate::db::map_err;
use crate::users;
use crescendo_domain::{Id, LogicalShard};
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

pub(crate) async fn follow(s: &Shards, follower: Id, followee: Id) -> StoreResult<bool> {
    s.write(follower.shard(), |db| users::follow(db, follower, followee))
        .await
}

pub(crate) async fn unfollow(s: &Shards, follower: Id, followee: Id) -> StoreResult<bool> {
    s.write(follower.shard(), |db| {
        users::unfollow(db, follower, followee)
    })
    .await
}

pub(crate) async fn followees(s: &Shards, follower: Id) -> StoreResult<Vec<Id>> {
    users::followees(s.of(follower), follower).await
}
