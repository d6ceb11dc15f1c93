//! Articles with their tags, and favourites (which keep each article's count).
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::clock::now_ms;
use crate::db::{Db, count, id_list, ids_from, map_err};
use crescendo_domain::Id;
use crescendo_store::{ArticleChanges, ArticleRecord, NewArticle, StoreError, StoreResult};
use rusqlite::{Connection, Row, params};
use std::collections::HashMap;

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

/// Articles with their tags, on any connection (a reader, or the writer inside a change).
fn load_articles(c: &Connection, ids: &[Id]) -> Result<Vec<ArticleRecord>, StoreError> {
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

fn insert_tags(c: &Connection, article: Id, tags: &[String]) -> Result<(), StoreError> {
    let mut st = c
        .prepare_cached("INSERT OR IGNORE INTO article_tags (article_id, tag) VALUES (?1, ?2)")
        .map_err(map_err)?;
    for t in tags {
        st.execute(params![article.as_i64(), t]).map_err(map_err)?;
    }
    Ok(())
}

/// Whether the article exists, inside a change that needs it to.
pub(crate) fn article_exists(c: &Connection, article: Id) -> Result<bool, StoreError> {
    Ok(count(
        c,
        "SELECT COUNT(*) FROM articles WHERE id = ?1",
        [article.as_i64()],
    )? == 1)
}

pub(crate) async fn create_article(db: &Db, new: NewArticle) -> StoreResult<ArticleRecord> {
    let id = db.ids().next_id(new.author_id.shard());
    db.write(move |tx| {
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

pub(crate) async fn articles_by_ids(db: &Db, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>> {
    let ids = ids.to_vec();
    db.read(move |c| load_articles(c, &ids)).await
}

pub(crate) async fn update_article(
    db: &Db,
    id: Id,
    ch: ArticleChanges,
) -> StoreResult<ArticleRecord> {
    db.write(move |tx| {
        let mut a = load_articles(tx, &[id])?.pop().ok_or(StoreError::NotFound)?;
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

pub(crate) async fn delete_article(db: &Db, id: Id) -> StoreResult<bool> {
    db.write(move |tx| {
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

/// Moves an article's favourites count by `delta`, in the transaction that adds or removes
/// the favourite.
fn count_favorite(c: &Connection, article: Id, delta: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE articles SET favorites_count = favorites_count + ?2 WHERE id = ?1")
        .and_then(|mut st| st.execute(params![article.as_i64(), delta]))
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn favorite(db: &Db, user: Id, article: Id) -> StoreResult<bool> {
    db.write(move |tx| {
        if !article_exists(tx, article)? {
            return Err(StoreError::NotFound);
        }
        let added = tx
            .prepare_cached("INSERT OR IGNORE INTO favorites (user_id, article_id, created_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![user.as_i64(), article.as_i64(), now_ms()]))
            .map_err(map_err)?
            == 1;
        if added {
            count_favorite(tx, article, 1)?;
        }
        Ok(added)
    })
    .await
}

pub(crate) async fn unfavorite(db: &Db, user: Id, article: Id) -> StoreResult<bool> {
    db.write(move |tx| {
        let removed = tx
            .prepare_cached("DELETE FROM favorites WHERE user_id = ?1 AND article_id = ?2")
            .and_then(|mut st| st.execute(params![user.as_i64(), article.as_i64()]))
            .map_err(map_err)?
            == 1;
        if removed {
            count_favorite(tx, article, -1)?;
        }
        Ok(removed)
    })
    .await
}

pub(crate) async fn favorite_ids(db: &Db, user: Id) -> StoreResult<Vec<Id>> {
    let sql = "SELECT article_id FROM favorites WHERE user_id = ?1 ORDER BY article_id DESC";
    db.read(move |c| ids_from(c, sql, [user.as_i64()])).await
}
