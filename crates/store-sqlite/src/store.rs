//! `SqliteStore`: the `Store` seam on one SQLite file.

use crate::db::{Db, map_err, now_ms};
use crate::{SqliteOptions, SqliteQueue};
use async_trait::async_trait;
use crescendo_domain::{CommentId, Id, IdGen, LogicalShard};
use crescendo_store::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::HashMap;
use std::sync::Arc;

/// The `Store` seam on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    /// IDs are made here, inside the single writer's transactions, so they never collide.
    ids: Arc<IdGen>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database described by `opts`.
    ///
    /// # Errors
    /// The file cannot be opened or migrated.
    pub fn open(opts: &SqliteOptions) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(opts)?,
            ids: Arc::new(IdGen::new()),
        })
    }

    /// The job queue kept in the same database file.
    pub fn queue(&self, max_attempts: u32) -> SqliteQueue {
        SqliteQueue::new(self.db.clone(), max_attempts)
    }
}

/// A JSON array of IDs, bound as one parameter and read with `json_each`, so a statement
/// with an `IN` list of any length is prepared once and cached.
fn id_list(ids: &[Id]) -> String {
    let mut s = String::with_capacity(ids.len() * 20 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.as_i64().to_string());
    }
    s.push(']');
    s
}

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

const USER_COLS: &str = "id, username, email, password_hash, bio, image";

fn user_by_id(c: &Connection, id: Id) -> Result<Option<UserRecord>, StoreError> {
    c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id.as_i64()], user_row).optional())
        .map_err(map_err)
}

const ARTICLE_COLS: &str = "id, author_id, slug, title, description, body, created_at, updated_at, favorites_count, cover_image";

fn article_row(r: &Row<'_>) -> rusqlite::Result<ArticleRecord> {
    Ok(ArticleRecord {
        id: Id::from_i64(r.get(0)?),
        author_id: Id::from_i64(r.get(1)?),
        slug: r.get(2)?,
        title: r.get(3)?,
        description: r.get(4)?,
        body: r.get(5)?,
        tags: Vec::new(),
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        favorites_count: r.get(8)?,
        cover_image: r.get(9)?,
    })
}

fn articles_by_ids(c: &Connection, ids: &[Id]) -> Result<Vec<ArticleRecord>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = id_list(ids);
    let mut arts: Vec<ArticleRecord> = c
        .prepare_cached(&format!(
            "SELECT {ARTICLE_COLS} FROM articles WHERE id IN (SELECT value FROM json_each(?1))"
        ))
        .and_then(|mut st| st.query_map([&list], article_row)?.collect())
        .map_err(map_err)?;
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    c.prepare_cached(
        "SELECT article_id, tag FROM article_tags WHERE article_id IN (SELECT value FROM json_each(?1)) ORDER BY tag",
    )
    .and_then(|mut st| {
        let rows = st.query_map([&list], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, tag) = row?;
            tags.entry(id).or_default().push(tag);
        }
        Ok(())
    })
    .map_err(map_err)?;
    for a in &mut arts {
        a.tags = tags.remove(&a.id.as_i64()).unwrap_or_default();
    }
    Ok(arts)
}

fn article_by_id(c: &Connection, id: Id) -> Result<ArticleRecord, StoreError> {
    articles_by_ids(c, &[id])?.pop().ok_or(StoreError::NotFound)
}

fn insert_tags(c: &Connection, article: Id, tags: &[String]) -> Result<(), StoreError> {
    let mut st = c
        .prepare_cached("INSERT OR IGNORE INTO article_tags (article_id, tag) VALUES (?1, ?2)")
        .map_err(map_err)?;
    for t in tags {
        st.execute(params![article.as_i64(), t]).map_err(map_err)?;
    }
    Ok(())
}

fn ids_from(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Id>, StoreError> {
    c.prepare_cached(sql)
        .and_then(|mut st| {
            st.query_map(params, |r| Ok(Id::from_i64(r.get(0)?)))?
                .collect()
        })
        .map_err(map_err)
}

fn count(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64, StoreError> {
    c.prepare_cached(sql)
        .and_then(|mut st| st.query_row(params, |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(map_err)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
            .await
    }

    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord> {
        let id = self.ids.next_id(LogicalShard::for_new_user(&new.username));
        self.db
            .write(move |tx| {
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

    async fn user_by_id(&self, id: Id) -> StoreResult<Option<UserRecord>> {
        self.db.read(move |c| user_by_id(c, id)).await
    }

    async fn users_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<UserRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = id_list(ids);
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE id IN (SELECT value FROM json_each(?1))"
                ))
                .and_then(|mut st| st.query_map([&list], user_row)?.collect())
                .map_err(map_err)
            })
            .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let email = email.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE id = (SELECT user_id FROM emails WHERE email = ?1)"
                ))
                .and_then(|mut st| st.query_row([&email], user_row).optional())
                .map_err(map_err)
            })
            .await
    }

    async fn user_id_by_username(&self, username: &str) -> StoreResult<Option<Id>> {
        let name = username.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT user_id FROM usernames WHERE username = ?1")
                    .and_then(|mut st| st.query_row([&name], |r| r.get::<_, i64>(0)).optional())
                    .map(|o| o.map(Id::from_i64))
                    .map_err(map_err)
            })
            .await
    }

    async fn update_user(&self, id: Id, ch: UserChanges) -> StoreResult<UserRecord> {
        self.db
            .write(move |tx| {
                let mut u = user_by_id(tx, id)?.ok_or(StoreError::NotFound)?;
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

    async fn follow(&self, follower: Id, followee: Id) -> StoreResult<bool> {
        self.db
            .write(move |tx| {
                tx.prepare_cached("INSERT OR IGNORE INTO follows (follower_id, followee_id, created_at) VALUES (?1, ?2, ?3)")
                    .and_then(|mut st| st.execute(params![follower.as_i64(), followee.as_i64(), now_ms()]))
                    .map(|n| n == 1)
                    .map_err(map_err)
            })
            .await
    }

    async fn unfollow(&self, follower: Id, followee: Id) -> StoreResult<bool> {
        self.db
            .write(move |tx| {
                tx.prepare_cached("DELETE FROM follows WHERE follower_id = ?1 AND followee_id = ?2")
                    .and_then(|mut st| st.execute(params![follower.as_i64(), followee.as_i64()]))
                    .map(|n| n == 1)
                    .map_err(map_err)
            })
            .await
    }

    async fn followees(&self, follower: Id) -> StoreResult<Vec<Id>> {
        self.db
            .read(move |c| {
                ids_from(
                    c,
                    "SELECT followee_id FROM follows WHERE follower_id = ?1",
                    [follower.as_i64()],
                )
            })
            .await
    }

    async fn create_article(&self, new: NewArticle) -> StoreResult<ArticleRecord> {
        let id = self.ids.next_id(new.author_id.shard());
        self.db
            .write(move |tx| {
                let a = new.into_record(id, now_ms());
                tx.prepare_cached(
                    "INSERT INTO articles (id, author_id, slug, title, description, body, created_at, updated_at, cover_image)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                )
                .and_then(|mut st| {
                    st.execute(params![id.as_i64(), a.author_id.as_i64(), a.slug, a.title, a.description, a.body, a.created_at, a.cover_image])
                })
                .map_err(map_err)?;
                insert_tags(tx, id, &a.tags)?;
                Ok(a)
            })
            .await
    }

    async fn articles_by_ids(&self, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>> {
        let ids = ids.to_vec();
        self.db.read(move |c| articles_by_ids(c, &ids)).await
    }

    async fn update_article(&self, id: Id, ch: ArticleChanges) -> StoreResult<ArticleRecord> {
        self.db
            .write(move |tx| {
                let mut a = article_by_id(tx, id)?;
                let tags_replaced = ch.apply_to(&mut a, now_ms());
                tx.prepare_cached(
                    "UPDATE articles SET slug = ?2, title = ?3, description = ?4, body = ?5, updated_at = ?6, cover_image = ?7 WHERE id = ?1",
                )
                .and_then(|mut st| st.execute(params![id.as_i64(), a.slug, a.title, a.description, a.body, a.updated_at, a.cover_image]))
                .map_err(map_err)?;
                if tags_replaced {
                    tx.prepare_cached("DELETE FROM article_tags WHERE article_id = ?1")
                        .and_then(|mut st| st.execute([id.as_i64()]))
                        .map_err(map_err)?;
                    insert_tags(tx, id, &a.tags)?;
                }
                Ok(a)
            })
            .await
    }

    async fn delete_article(&self, id: Id) -> StoreResult<bool> {
        self.db
            .write(move |tx| {
                for sql in [
                    "DELETE FROM article_tags WHERE article_id = ?1",
                    "DELETE FROM favorites WHERE article_id = ?1",
                    "DELETE FROM comments WHERE article_id = ?1",
                ] {
                    tx.prepare_cached(sql)
                        .and_then(|mut st| st.execute([id.as_i64()]))
                        .map_err(map_err)?;
                }
                tx.prepare_cached("DELETE FROM articles WHERE id = ?1")
                    .and_then(|mut st| st.execute([id.as_i64()]))
                    .map(|n| n == 1)
                    .map_err(map_err)
            })
            .await
    }

    async fn list_article_ids(&self, filter: &ArticleFilter, page: Page) -> StoreResult<IdPage> {
        let filter = filter.clone();
        self.db
            .read(move |c| {
                let (lim, off) = (i64::from(page.limit), i64::from(page.offset));
                let (ids, total) = match &filter {
                    ArticleFilter::All => (
                        ids_from(c, "SELECT id FROM articles ORDER BY id DESC LIMIT ?1 OFFSET ?2", params![lim, off])?,
                        count(c, "SELECT COUNT(*) FROM articles", [])?,
                    ),
                    ArticleFilter::Tag(tag) => (
                        ids_from(
                            c,
                            "SELECT article_id FROM article_tags WHERE tag = ?1 ORDER BY article_id DESC LIMIT ?2 OFFSET ?3",
                            params![tag, lim, off],
                        )?,
                        count(c, "SELECT COUNT(*) FROM article_tags WHERE tag = ?1", [tag])?,
                    ),
                    ArticleFilter::Author(a) => (
                        ids_from(
                            c,
                            "SELECT id FROM articles WHERE author_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
                            params![a.as_i64(), lim, off],
                        )?,
                        count(c, "SELECT COUNT(*) FROM articles WHERE author_id = ?1", [a.as_i64()])?,
                    ),
                    ArticleFilter::FavoritedBy(u) => (
                        ids_from(
                            c,
                            "SELECT article_id FROM favorites WHERE user_id = ?1 ORDER BY article_id DESC LIMIT ?2 OFFSET ?3",
                            params![u.as_i64(), lim, off],
                        )?,
                        count(c, "SELECT COUNT(*) FROM favorites WHERE user_id = ?1", [u.as_i64()])?,
                    ),
                    ArticleFilter::Feed(u) => (
                        ids_from(
                            c,
                            "SELECT id FROM articles
                             WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1)
                             ORDER BY id DESC LIMIT ?2 OFFSET ?3",
                            params![u.as_i64(), lim, off],
                        )?,
                        count(
                            c,
                            "SELECT COUNT(*) FROM articles
                             WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1)",
                            [u.as_i64()],
                        )?,
                    ),
                    ArticleFilter::Match { tag, author, favorited_by } => {
                        // Several filters at once: rare, so one general statement.
                        const WHERE: &str = "WHERE (?1 IS NULL OR id IN (SELECT article_id FROM article_tags WHERE tag = ?1))
                               AND (?2 IS NULL OR author_id = ?2)
                               AND (?3 IS NULL OR id IN (SELECT article_id FROM favorites WHERE user_id = ?3))";
                        let (a, f) = (author.map(Id::as_i64), favorited_by.map(Id::as_i64));
                        (
                            ids_from(
                                c,
                                &format!("SELECT id FROM articles {WHERE} ORDER BY id DESC LIMIT ?4 OFFSET ?5"),
                                params![tag, a, f, lim, off],
                            )?,
                            count(c, &format!("SELECT COUNT(*) FROM articles {WHERE}"), params![tag, a, f])?,
                        )
                    }
                };
                Ok(IdPage { ids, total })
            })
            .await
    }

    async fn popular_tags(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT tag FROM article_tags GROUP BY tag ORDER BY COUNT(*) DESC, tag LIMIT ?1")
                    .and_then(|mut st| st.query_map([i64::from(limit)], |r| r.get(0))?.collect())
                    .map_err(map_err)
            })
            .await
    }

    async fn favorite(&self, user: Id, article: Id) -> StoreResult<bool> {
        self.db
            .write(move |tx| {
                let exists = count(tx, "SELECT COUNT(*) FROM articles WHERE id = ?1", [article.as_i64()])? == 1;
                if !exists {
                    return Err(StoreError::NotFound);
                }
                let added = tx
                    .prepare_cached("INSERT OR IGNORE INTO favorites (user_id, article_id, created_at) VALUES (?1, ?2, ?3)")
                    .and_then(|mut st| st.execute(params![user.as_i64(), article.as_i64(), now_ms()]))
                    .map_err(map_err)?
                    == 1;
                if added {
                    tx.prepare_cached("UPDATE articles SET favorites_count = favorites_count + 1 WHERE id = ?1")
                        .and_then(|mut st| st.execute([article.as_i64()]))
                        .map_err(map_err)?;
                }
                Ok(added)
            })
            .await
    }

    async fn unfavorite(&self, user: Id, article: Id) -> StoreResult<bool> {
        self.db
            .write(move |tx| {
                let removed = tx
                    .prepare_cached("DELETE FROM favorites WHERE user_id = ?1 AND article_id = ?2")
                    .and_then(|mut st| st.execute(params![user.as_i64(), article.as_i64()]))
                    .map_err(map_err)?
                    == 1;
                if removed {
                    tx.prepare_cached(
                        "UPDATE articles SET favorites_count = favorites_count - 1 WHERE id = ?1",
                    )
                    .and_then(|mut st| st.execute([article.as_i64()]))
                    .map_err(map_err)?;
                }
                Ok(removed)
            })
            .await
    }

    async fn favorite_ids(&self, user: Id) -> StoreResult<Vec<Id>> {
        self.db
            .read(move |c| {
                ids_from(
                    c,
                    "SELECT article_id FROM favorites WHERE user_id = ?1 ORDER BY article_id DESC",
                    [user.as_i64()],
                )
            })
            .await
    }

    async fn create_comment(
        &self,
        article: Id,
        author: Id,
        body: String,
    ) -> StoreResult<CommentRecord> {
        let id = self.ids.next_comment_id();
        self.db
            .write(move |tx| {
                let exists = count(tx, "SELECT COUNT(*) FROM articles WHERE id = ?1", [article.as_i64()])? == 1;
                if !exists {
                    return Err(StoreError::NotFound);
                }
                let now = now_ms();
                tx.prepare_cached(
                    "INSERT INTO comments (id, article_id, author_id, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )
                .and_then(|mut st| st.execute(params![id.as_i64(), article.as_i64(), author.as_i64(), body, now]))
                .map_err(map_err)?;
                Ok(CommentRecord { id, article_id: article, author_id: author, body, created_at: now, updated_at: now })
            })
            .await
    }

    async fn comments_for(&self, article: Id) -> StoreResult<Vec<CommentRecord>> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE article_id = ?1 ORDER BY id",
                )
                .and_then(|mut st| st.query_map([article.as_i64()], comment_row)?.collect())
                .map_err(map_err)
            })
            .await
    }

    async fn comment(&self, article: Id, id: CommentId) -> StoreResult<Option<CommentRecord>> {
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE id = ?1 AND article_id = ?2",
                )
                .and_then(|mut st| st.query_row(params![id.as_i64(), article.as_i64()], comment_row).optional())
                .map_err(map_err)
            })
            .await
    }

    async fn delete_comment(&self, article: Id, id: CommentId) -> StoreResult<bool> {
        self.db
            .write(move |tx| {
                tx.prepare_cached("DELETE FROM comments WHERE id = ?1 AND article_id = ?2")
                    .and_then(|mut st| st.execute(params![id.as_i64(), article.as_i64()]))
                    .map(|n| n == 1)
                    .map_err(map_err)
            })
            .await
    }

    async fn create_upload(&self, new: NewUpload, queue: &str) -> StoreResult<UploadRecord> {
        let id = self.ids.next_id(new.owner_id.shard());
        let queue = queue.to_string();
        self.db
            .write(move |tx| {
                let now = now_ms();
                tx.prepare_cached("INSERT INTO uploads (id, owner_id, mime, original, width, height, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                    .and_then(|mut st| st.execute(params![id.as_i64(), new.owner_id.as_i64(), new.mime, new.original, new.width, new.height, now]))
                    .map_err(map_err)?;
                tx.prepare_cached("INSERT INTO outbox (queue, payload, created_at) VALUES (?1, ?2, ?3)")
                    .and_then(|mut st| st.execute(params![queue, crescendo_store::jobs::ImageVariants { upload: id }.encode(), now]))
                    .map_err(map_err)?;
                Ok(new.into_record(id, now))
            })
            .await
    }

    async fn upload(&self, id: Id) -> StoreResult<Option<UploadRecord>> {
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT id, owner_id, state, reason, mime, original, width, height, created_at FROM uploads WHERE id = ?1")
                    .and_then(|mut st| st.query_row([id.as_i64()], upload_row).optional())
                    .map_err(map_err)
            })
            .await
    }

    async fn settle_upload(
        &self,
        id: Id,
        state: UploadState,
        reason: Option<String>,
    ) -> StoreResult<bool> {
        self.db
            .write(move |tx| {
                tx.prepare_cached("UPDATE uploads SET state = ?2, reason = ?3 WHERE id = ?1 AND state = 'processing'")
                    .and_then(|mut st| st.execute(params![id.as_i64(), state.as_str(), reason]))
                    .map(|n| n == 1)
                    .map_err(map_err)
            })
            .await
    }

    async fn claim_outbox(&self, limit: u32, lease_ms: i64) -> StoreResult<Vec<OutboxEntry>> {
        self.db
            .write(move |tx| {
                let now = now_ms();
                tx.prepare_cached(
                    "UPDATE outbox SET lease_until = ?1 + ?2
                     WHERE id IN (SELECT id FROM outbox WHERE lease_until <= ?1 ORDER BY id LIMIT ?3)
                     RETURNING id, queue, payload",
                )
                .and_then(|mut st| {
                    st.query_map(params![now, lease_ms, limit], |r| Ok(OutboxEntry { id: r.get(0)?, queue: r.get(1)?, payload: r.get(2)? }))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map(|mut v| {
                    v.sort_by_key(|e| e.id);
                    v
                })
                .map_err(map_err)
            })
            .await
    }

    async fn remove_outbox(&self, ids: &[i64]) -> StoreResult<()> {
        let ids = ids.to_vec();
        self.db
            .write(move |tx| {
                let mut st = tx
                    .prepare_cached("DELETE FROM outbox WHERE id = ?1")
                    .map_err(map_err)?;
                for id in ids {
                    st.execute([id]).map_err(map_err)?;
                }
                Ok(())
            })
            .await
    }
}

fn upload_row(r: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    let state: String = r.get(2)?;
    Ok(UploadRecord {
        id: Id::from_i64(r.get(0)?),
        owner_id: Id::from_i64(r.get(1)?),
        state: UploadState::parse(&state).unwrap_or(UploadState::Failed),
        reason: r.get(3)?,
        mime: r.get(4)?,
        original: r.get(5)?,
        width: r.get(6)?,
        height: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn comment_row(r: &Row<'_>) -> rusqlite::Result<CommentRecord> {
    Ok(CommentRecord {
        id: CommentId::from_i64(r.get(0)?),
        article_id: Id::from_i64(r.get(1)?),
        author_id: Id::from_i64(r.get(2)?),
        body: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}
