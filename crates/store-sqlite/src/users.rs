//! Users, the username and email directories, and follows (the profile's facts).
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::clock::now_ms;
use crate::db::{Db, count, id_list, ids_from, map_err};
use crescendo_domain::{Id, LogicalShard};
use crescendo_store::{NewUser, StoreError, StoreResult, UserChanges, UserRecord};
use rusqlite::{Connection, OptionalExtension, Row, params};

const USER_COLS: &str = "id, username, email, password_hash, bio, image";

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: Id::from_i64(r.get(0)?),
        username: r.get(1)?,
        email: r.get(2)?,
        password_hash: r.get(3)?,
        bio: r.get(4)?,
        image: r.get(5)?,
    })
}

/// A user by ID, on any connection (a reader, or the writer inside a change).
fn load_user(c: &Connection, id: Id) -> Result<Option<UserRecord>, StoreError> {
    c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id.as_i64()], user_row).optional())
        .map_err(map_err)
}

pub(crate) async fn create_user(db: &Db, new: NewUser) -> StoreResult<UserRecord> {
    let id = db.ids().next_id(LogicalShard::for_new_user(&new.username));
    db.write(move |tx| {
        let now = now_ms();
        tx.prepare_cached(
            "INSERT INTO users (id, username, email, password_hash, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .and_then(|mut st| {
            st.execute(params![
                id.as_i64(),
                new.username,
                new.email,
                new.password_hash,
                now
            ])
        })
        .map_err(map_err)?;
        tx.prepare_cached("INSERT INTO usernames (username, user_id) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![new.username, id.as_i64()]))
            .map_err(map_err)?;
        tx.prepare_cached("INSERT INTO emails (email, user_id) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![new.email, id.as_i64()]))
            .map_err(map_err)?;
        Ok(new.into_record(id))
    })
    .await
}

pub(crate) async fn user_by_id(db: &Db, id: Id) -> StoreResult<Option<UserRecord>> {
    db.read(move |c| load_user(c, id)).await
}

pub(crate) async fn users_by_ids(db: &Db, ids: &[Id]) -> StoreResult<Vec<UserRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = id_list(ids);
    db.read(move |c| {
        c.prepare_cached(&format!(
            "SELECT {USER_COLS} FROM users WHERE id IN (SELECT value FROM json_each(?1))"
        ))
        .and_then(|mut st| st.query_map([&list], user_row)?.collect())
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn user_by_email(db: &Db, email: &str) -> StoreResult<Option<UserRecord>> {
    let email = email.to_string();
    db.read(move |c| {
        c.prepare_cached(&format!(
            "SELECT {USER_COLS} FROM users WHERE id = (SELECT user_id FROM emails WHERE email = ?1)"
        ))
        .and_then(|mut st| st.query_row([&email], user_row).optional())
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn user_id_by_username(db: &Db, username: &str) -> StoreResult<Option<Id>> {
    let name = username.to_string();
    db.read(move |c| {
        c.prepare_cached("SELECT user_id FROM usernames WHERE username = ?1")
            .and_then(|mut st| st.query_row([&name], |r| r.get::<_, i64>(0)).optional())
            .map(|o| o.map(Id::from_i64))
            .map_err(map_err)
    })
    .await
}

pub(crate) async fn update_user(db: &Db, id: Id, ch: UserChanges) -> StoreResult<UserRecord> {
    db.write(move |tx| {
        let mut u = load_user(tx, id)?.ok_or(StoreError::NotFound)?;
        if let Some(name) = &ch.username {
            tx.prepare_cached("UPDATE usernames SET username = ?1 WHERE user_id = ?2")
                .and_then(|mut st| st.execute(params![name, id.as_i64()]))
                .map_err(map_err)?;
        }
        if let Some(email) = &ch.email {
            tx.prepare_cached("UPDATE emails SET email = ?1 WHERE user_id = ?2")
                .and_then(|mut st| st.execute(params![email, id.as_i64()]))
                .map_err(map_err)?;
        }
        ch.apply_to(&mut u);
        tx.prepare_cached(
            "UPDATE users SET username = ?2, email = ?3, password_hash = ?4, bio = ?5, image = ?6, updated_at = ?7
             WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.execute(params![id.as_i64(), u.username, u.email, u.password_hash, u.bio, u.image, now_ms()])
        })
        .map_err(map_err)?;
        Ok(u)
    })
    .await
}

pub(crate) async fn follow(db: &Db, follower: Id, followee: Id) -> StoreResult<bool> {
    let sql =
        "INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)";
    let n = db
        .execute(sql, (follower.as_i64(), followee.as_i64(), now_ms()))
        .await?;
    Ok(n == 1)
}

pub(crate) async fn unfollow(db: &Db, follower: Id, followee: Id) -> StoreResult<bool> {
    let sql = "DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2";
    let n = db
        .execute(sql, (follower.as_i64(), followee.as_i64()))
        .await?;
    Ok(n == 1)
}

pub(crate) async fn followees(db: &Db, follower: Id) -> StoreResult<Vec<Id>> {
    let sql = "SELECT followee_id FROM follows WHERE follower_id = ?1";
    db.read(move |c| ids_from(c, sql, [follower.as_i64()]))
        .await
}

// One `follows` table serves both sides of a follow here.

pub(crate) async fn followers_count(db: &Db, user: Id) -> StoreResult<u64> {
    let sql = "SELECT COUNT(*) FROM follows WHERE followee_id = ?1";
    db.read(move |c| count(c, sql, [user.as_i64()])).await
}

pub(crate) async fn followers_page(
    db: &Db,
    user: Id,
    after: Option<Id>,
    limit: u32,
) -> StoreResult<Vec<Id>> {
    let sql = "SELECT follower_id FROM follows WHERE followee_id = ?1 AND follower_id > ?2
               ORDER BY follower_id LIMIT ?3";
    let after = after.map_or(i64::MIN, Id::as_i64);
    db.read(move |c| ids_from(c, sql, params![user.as_i64(), after, i64::from(limit)]))
        .await
}

pub(crate) async fn sync_follower(db: &Db, follower: Id, followee: Id) -> StoreResult<bool> {
    let sql = "SELECT COUNT(*) FROM follows WHERE follower_id = ?1 AND followee_id = ?2";
    let n = db
        .read(move |c| count(c, sql, [follower.as_i64(), followee.as_i64()]))
        .await?;
    Ok(n == 1)
}
