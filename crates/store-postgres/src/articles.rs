//! Articles with their tags, and favourites (which keep each article's count).
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::clock::now_ms;
use crate::db::{Db, Tx, map_err, raw};
use crescendo_domain::Id;
use crescendo_store::jobs::FeedJob;
use crescendo_store::{ArticleChanges, ArticleRecord, NewArticle, StoreError, StoreResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

const ARTICLE_COLS: &str = "id, author_id, slug, title, description, body, created_at, updated_at, favorites_count, cover_image";

fn article_row(r: &PgRow) -> ArticleRecord {
    ArticleRecord {
        id: Id::from_i64(r.get(0)),
        author_id: Id::from_i64(r.get(1)),
        slug: r.get(2),
        title: r.get(3),
        description: r.get(4),
        body: r.get(5),
        tags: Vec::new(),
        created_at: r.get(6),
        updated_at: r.get(7),
        favorites_count: r.get(8),
        cover_image: r.get(9),
    }
}

/// One article with its tags, read inside a write.
async fn article_in_tx(tx: &mut Tx<'_>, id: Id) -> StoreResult<ArticleRecord> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ARTICLE_COLS} FROM articles WHERE id = $1"
    )))
    .bind(id.as_i64())
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)?;
    let mut a = article_row(&row);
    a.tags = sqlx::query_scalar("SELECT tag FROM article_tags WHERE article_id = $1 ORDER BY tag")
        .bind(id.as_i64())
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(a)
}

async fn insert_tags(tx: &mut Tx<'_>, article: Id, tags: &[String]) -> StoreResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO article_tags (article_id, tag) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING")
        .bind(article.as_i64())
        .bind(tags)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn create_article(db: &Db, new: NewArticle) -> StoreResult<ArticleRecord> {
    let mut tx = db.begin_for(new.author_id.shard()).await?;
    let now = now_ms();
    let id: i64 = sqlx::query_scalar("SELECT next_id($1)")
        .bind(i32::from(new.author_id.shard().get()))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    let a = new.into_record(Id::from_i64(id), now);
    sqlx::query(
        "INSERT INTO articles (id, author_id, slug, title, description, body, created_at, updated_at, cover_image)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
    )
    .bind(a.id.as_i64())
    .bind(a.author_id.as_i64())
    .bind(&a.slug)
    .bind(&a.title)
    .bind(&a.description)
    .bind(&a.body)
    .bind(a.created_at)
    .bind(&a.cover_image)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    insert_tags(&mut tx, a.id, &a.tags).await?;
    let fan_out = db.feed_jobs(FeedJob::Publish {
        article: a.id,
        author: a.author_id,
    });
    db.commit_with(tx, fan_out).await?;
    Ok(a)
}

pub(crate) async fn articles_by_ids(db: &Db, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = &raw(ids);
    db.read(|pool| async move {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ARTICLE_COLS} FROM articles WHERE id = ANY($1)"
        )))
        .bind(list)
        .fetch_all(&pool)
        .await
        .map_err(map_err)?;
        let mut arts: Vec<ArticleRecord> = rows.iter().map(article_row).collect();
        let tags = sqlx::query(
            "SELECT article_id, tag FROM article_tags WHERE article_id = ANY($1) ORDER BY tag",
        )
        .bind(list)
        .fetch_all(&pool)
        .await
        .map_err(map_err)?;
        for a in &mut arts {
            a.tags = tags
                .iter()
                .filter(|r| r.get::<i64, _>(0) == a.id.as_i64())
                .map(|r| r.get(1))
                .collect();
        }
        Ok(arts)
    })
    .await
}

pub(crate) async fn update_article(
    db: &Db,
    id: Id,
    ch: ArticleChanges,
) -> StoreResult<ArticleRecord> {
    let mut tx = db.begin_for(id.shard()).await?;
    let mut a = article_in_tx(&mut tx, id).await?;
    let tags_replaced = ch.apply_to(&mut a, now_ms());
    sqlx::query("UPDATE articles SET slug = $2, title = $3, description = $4, body = $5, updated_at = $6, cover_image = $7 WHERE id = $1")
        .bind(id.as_i64())
        .bind(&a.slug)
        .bind(&a.title)
        .bind(&a.description)
        .bind(&a.body)
        .bind(a.updated_at)
        .bind(&a.cover_image)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    if tags_replaced {
        sqlx::query("DELETE FROM article_tags WHERE article_id = $1")
            .bind(id.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        insert_tags(&mut tx, id, &a.tags).await?;
    }
    db.commit(tx).await?;
    Ok(a)
}

pub(crate) async fn delete_article(db: &Db, id: Id) -> StoreResult<bool> {
    let mut tx = db.begin_for(id.shard()).await?;
    for sql in [
        "DELETE FROM article_tags WHERE article_id = $1",
        "DELETE FROM favorites WHERE article_id = $1",
        "DELETE FROM comments WHERE article_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id.as_i64())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    let n = sqlx::query("DELETE FROM articles WHERE id = $1")
        .bind(id.as_i64())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let gone = n.rows_affected() == 1;
    let jobs = if gone {
        db.feed_jobs(FeedJob::Unpublish { article: id })
    } else {
        Vec::new()
    };
    db.commit_with(tx, jobs).await?;
    Ok(gone)
}

/// How a write holds the article it depends on until it commits.
pub(crate) enum ArticleLock {
    /// `FOR UPDATE`: the write changes the article row too.
    Update,
    /// `FOR SHARE`: the article only has to go on existing.
    Share,
}

/// Locks an article for the rest of the transaction.
///
/// # Errors
/// [`StoreError::NotFound`] if there is no such article.
pub(crate) async fn lock_article(
    tx: &mut Tx<'_>,
    article: Id,
    lock: ArticleLock,
) -> StoreResult<()> {
    let sql = match lock {
        ArticleLock::Update => "SELECT id FROM articles WHERE id = $1 FOR UPDATE",
        ArticleLock::Share => "SELECT id FROM articles WHERE id = $1 FOR SHARE",
    };
    let exists: Option<i64> = sqlx::query_scalar(sql)
        .bind(article.as_i64())
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
    exists.map(drop).ok_or(StoreError::NotFound)
}

/// Moves an article's favourites count by `delta`, in the transaction that adds or removes
/// the favourite.
async fn count_favorite(tx: &mut Tx<'_>, article: Id, delta: i64) -> StoreResult<()> {
    sqlx::query("UPDATE articles SET favorites_count = favorites_count + $2 WHERE id = $1")
        .bind(article.as_i64())
        .bind(delta)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

pub(crate) async fn favorite(db: &Db, user: Id, article: Id) -> StoreResult<bool> {
    let mut tx = db.begin_for(article.shard()).await?;
    // the count and the favourite change together
    lock_article(&mut tx, article, ArticleLock::Update).await?;
    let added = sqlx::query("INSERT INTO favorites (user_id, article_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(user.as_i64())
        .bind(article.as_i64())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected()
        == 1;
    if added {
        count_favorite(&mut tx, article, 1).await?;
    }
    db.commit(tx).await?;
    Ok(added)
}

pub(crate) async fn unfavorite(db: &Db, user: Id, article: Id) -> StoreResult<bool> {
    let mut tx = db.begin_for(article.shard()).await?;
    let removed = sqlx::query("DELETE FROM favorites WHERE user_id = $1 AND article_id = $2")
        .bind(user.as_i64())
        .bind(article.as_i64())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected()
        == 1;
    if removed {
        count_favorite(&mut tx, article, -1).await?;
    }
    db.commit(tx).await?;
    Ok(removed)
}

pub(crate) async fn favorite_ids(db: &Db, user: Id) -> StoreResult<Vec<Id>> {
    db.read(|pool| async move {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT article_id FROM favorites WHERE user_id = $1 ORDER BY article_id DESC",
        )
        .bind(user.as_i64())
        .fetch_all(&pool)
        .await
        .map_err(map_err)?;
        Ok(ids.into_iter().map(Id::from_i64).collect())
    })
    .await
}
