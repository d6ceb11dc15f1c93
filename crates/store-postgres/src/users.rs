//! Users, the username and email directories, and follows (the profile's facts).
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::clock::now_ms;
use crate::db::{Db, map_err, raw};
use crescendo_domain::{Id, LogicalShard};
use crescendo_store::{NewUser, StoreError, StoreResult, UserChanges, UserRecord};
use sqlx::Row;
use sqlx::postgres::PgRow;

const USER_COLS: &str = "id, username, email, password_hash, bio, image";

fn user_row(r: &PgRow) -> UserRecord {
    UserRecord {
        id: Id::from_i64(r.get(0)),
        username: r.get(1),
        email: r.get(2),
        password_hash: r.get(3),
        bio: r.get(4),
        image: r.get(5),
    }
}

pub(crate) async fn create_user(db: &Db, new: NewUser) -> StoreResult<UserRecord> {
    let shard = LogicalShard::for_new_user(&new.username);
    let mut tx = db.begin_for(shard).await?;
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (id, username, email, password_hash, created_at, updated_at)
         VALUES (next_id($1), $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(i32::from(shard.get()))
    .bind(&new.username)
    .bind(&new.email)
    .bind(&new.password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    // the directory entries, whose keys are unique
    for (sql, key) in [
        (
            "INSERT INTO usernames (username_key, user_id) VALUES (lower($1), $2)",
            &new.username,
        ),
        (
            "INSERT INTO emails (email, user_id) VALUES ($1, $2)",
            &new.email,
        ),
    ] {
        sqlx::query(sql)
            .bind(key)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    db.commit(tx).await?;
    Ok(new.into_record(Id::from_i64(id)))
}

pub(crate) async fn user_by_id(db: &Db, id: Id) -> StoreResult<Option<UserRecord>> {
    db.read(|pool| async move {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1"
        )))
        .bind(id.as_i64())
        .fetch_optional(&pool)
        .await
        .map_err(map_err)?;
        Ok(row.as_ref().map(user_row))
    })
    .await
}

pub(crate) async fn users_by_ids(db: &Db, ids: &[Id]) -> StoreResult<Vec<UserRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    db.read(|pool| async move {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = ANY($1)"
        )))
        .bind(raw(ids))
        .fetch_all(&pool)
        .await
        .map_err(map_err)?;
        Ok(rows.iter().map(user_row).collect())
    })
    .await
}

pub(crate) async fn user_by_email(db: &Db, email: &str) -> StoreResult<Option<UserRecord>> {
    // sign-in: always the primary, so a user who has just signed up is found
    db.read_primary(|pool| async move {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE id = (SELECT user_id FROM emails WHERE email = $1)"
        )))
        .bind(email)
        .fetch_optional(&pool)
        .await
        .map_err(map_err)?;
        Ok(row.as_ref().map(user_row))
    })
    .await
}

pub(crate) async fn user_id_by_username(db: &Db, username: &str) -> StoreResult<Option<Id>> {
    db.read(|pool| async move {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM usernames WHERE username_key = lower($1)")
                .bind(username)
                .fetch_optional(&pool)
                .await
                .map_err(map_err)?;
        Ok(id.map(Id::from_i64))
    })
    .await
}

pub(crate) async fn update_user(db: &Db, id: Id, ch: UserChanges) -> StoreResult<UserRecord> {
    let mut tx = db.begin_for(id.shard()).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM users WHERE id = $1 FOR UPDATE"
    )))
    .bind(id.as_i64())
    .fetch_optional(&mut *tx)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)?;
    let mut u = user_row(&row);
    // the directory entries move with the user's name and email
    for (sql, key) in [
        (
            "UPDATE usernames SET username_key = lower($1) WHERE user_id = $2",
            &ch.username,
        ),
        ("UPDATE emails SET email = $1 WHERE user_id = $2", &ch.email),
    ] {
        if let Some(key) = key {
            sqlx::query(sql)
                .bind(key)
                .bind(id.as_i64())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
    }
    ch.apply_to(&mut u);
    sqlx::query(
        "UPDATE users SET username = $2, email = $3, password_hash = $4, bio = $5, image = $6, updated_at = $7 WHERE id = $1",
    )
    .bind(id.as_i64())
    .bind(&u.username)
    .bind(&u.email)
    .bind(&u.password_hash)
    .bind(&u.bio)
    .bind(&u.image)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    db.commit(tx).await?;
    Ok(u)
}

pub(crate) async fn follow(db: &Db, follower: Id, followee: Id) -> StoreResult<bool> {
    let follow = sqlx::query("INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(follower.as_i64())
        .bind(followee.as_i64())
        .bind(now_ms());
    Ok(db.execute_for(follower.shard(), follow).await? == 1)
}

pub(crate) async fn unfollow(db: &Db, follower: Id, followee: Id) -> StoreResult<bool> {
    let unfollow = sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
        .bind(follower.as_i64())
        .bind(followee.as_i64());
    Ok(db.execute_for(follower.shard(), unfollow).await? == 1)
}

pub(crate) async fn followees(db: &Db, follower: Id) -> StoreResult<Vec<Id>> {
    db.read(|pool| async move {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT followee_id FROM follows WHERE follower_id = $1")
                .bind(follower.as_i64())
                .fetch_all(&pool)
                .await
                .map_err(map_err)?;
        Ok(ids.into_iter().map(Id::from_i64).collect())
    })
    .await
}

// On one database, `follows` serves both sides of a follow (the `followers` table is a
// sharded store's).

pub(crate) async fn followers_count(db: &Db, user: Id) -> StoreResult<u64> {
    db.read(|pool| async move {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM follows WHERE followee_id = $1")
            .bind(user.as_i64())
            .fetch_one(&pool)
            .await
            .map_err(map_err)?;
        Ok(n as u64)
    })
    .await
}

pub(crate) async fn followers_page(
    db: &Db,
    user: Id,
    after: Option<Id>,
    limit: u32,
) -> StoreResult<Vec<Id>> {
    db.read(|pool| async move {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT follower_id FROM follows WHERE followee_id = $1 AND follower_id > $2
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

pub(crate) async fn sync_follower(db: &Db, follower: Id, followee: Id) -> StoreResult<bool> {
    follows(db, follower, followee).await
}

/// Whether `follower` follows `followee` (read on the primary: a sync must see the write
/// that made its job).
pub(crate) async fn follows(db: &Db, follower: Id, followee: Id) -> StoreResult<bool> {
    db.read_primary(|pool| async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM follows WHERE follower_id = $1 AND followee_id = $2",
        )
        .bind(follower.as_i64())
        .bind(followee.as_i64())
        .fetch_one(&pool)
        .await
        .map_err(map_err)?;
        Ok(n == 1)
    })
    .await
}
