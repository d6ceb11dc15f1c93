//! Article lists (everything, by tag, author or favouriting user, a user's feed, or several
//! of those at once), newest first with their totals; and the popular tags.
//!
//! The statements come from the one description of the filters in
//! `crescendo_store::list_sql`; this module binds their values.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::db::{Db, map_err};
use crescendo_domain::Id;
use crescendo_store::list_sql::{Placeholder, Term, statements};
use crescendo_store::{ArticleFilter, IdPage, Page, StoreResult, TimelineEntry};

pub(crate) async fn list_article_ids(
    db: &Db,
    filter: &ArticleFilter,
    page: Page,
) -> StoreResult<IdPage> {
    let terms = &Term::of(filter);
    let (ids_sql, count_sql) = &statements(terms, Placeholder::Dollar);
    db.read(|pool| async move {
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(ids_sql.clone()));
        let mut c = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql.clone()));
        for term in terms {
            (q, c) = match term {
                Term::Tag(tag) => (q.bind(tag.clone()), c.bind(tag.clone())),
                Term::Author(id) | Term::FavoritedBy(id) | Term::Feed(id) => {
                    (q.bind(*id), c.bind(*id))
                }
            };
        }
        let ids = q
            .bind(i64::from(page.limit))
            .bind(i64::from(page.offset))
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
        let total = c.fetch_one(&pool).await.map_err(map_err)?;
        Ok(IdPage {
            ids: ids.into_iter().map(Id::from_i64).collect(),
            total: total as u64,
        })
    })
    .await
}

pub(crate) async fn popular_tags(db: &Db, limit: u32) -> StoreResult<Vec<String>> {
    db.read(|pool| async move {
        sqlx::query_scalar(
            "SELECT tag FROM article_tags GROUP BY tag ORDER BY COUNT(*) DESC, tag LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&pool)
        .await
        .map_err(map_err)
    })
    .await
}

// No timelines on one database: every feed is merged on read (a sharded store keeps them).

pub(crate) async fn timeline_threshold(_db: &Db) -> StoreResult<Option<u64>> {
    Ok(None)
}

pub(crate) async fn celebrities(_db: &Db) -> StoreResult<Vec<Id>> {
    Ok(Vec::new())
}

pub(crate) async fn add_to_timelines(_db: &Db, _entries: &[TimelineEntry]) -> StoreResult<Vec<Id>> {
    Ok(Vec::new())
}

pub(crate) async fn remove_from_timelines(_db: &Db, _article: Id) -> StoreResult<Vec<Id>> {
    Ok(Vec::new())
}

pub(crate) async fn remove_author_from_timelines(
    _db: &Db,
    _author: Id,
    _owners: &[Id],
) -> StoreResult<Vec<Id>> {
    Ok(Vec::new())
}

pub(crate) async fn timeline(_db: &Db, _owner: Id, _page: Page) -> StoreResult<IdPage> {
    Ok(IdPage::default())
}
