//! Comments on articles.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::articles::article_exists;
use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_domain::{CommentId, Id};
use crescendo_store::{CommentRecord, StoreError, StoreResult};
use rusqlite::{OptionalExtension, Row, params};

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

pub(crate) async fn create_comment(
    db: &Db,
    article: Id,
    author: Id,
    body: String,
) -> StoreResult<CommentRecord> {
    let id = db.ids().next_comment_id();
    db.write(move |tx| {
        if !article_exists(tx, article)? {
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

pub(crate) async fn comments_for(db: &Db, article: Id) -> StoreResult<Vec<CommentRecord>> {
    db.read(move |c| {
        c.prepare_cached(
            "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE article_id = ?1 ORDER BY id",
        )
        .and_then(|mut st| st.query_map([article.as_i64()], comment_row)?.collect())
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn comment(
    db: &Db,
    article: Id,
    id: CommentId,
) -> StoreResult<Option<CommentRecord>> {
    db.read(move |c| {
        c.prepare_cached(
            "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE id = ?1 AND article_id = ?2",
        )
        .and_then(|mut st| st.query_row(params![id.as_i64(), article.as_i64()], comment_row).optional())
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn delete_comment(db: &Db, article: Id, id: CommentId) -> StoreResult<bool> {
    let sql = "DELETE FROM comments WHERE id = ?1 AND article_id = ?2";
    let n = db.execute(sql, (id.as_i64(), article.as_i64())).await?;
    Ok(n == 1)
}
