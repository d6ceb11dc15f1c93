//! Article lists (everything, by tag, author or favouriting user, a user's feed, or several
//! of those at once), newest first with their totals; and the popular tags.
//!
//! Each filter is described once, as a [`Term`]: what it binds and the condition it puts
//! on the table that answers it. [`statements`] turns a filter's terms into the page and
//! count statements, so a new filter is a new term, not a new pair of statements.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::db::{Db, count, ids_from, map_err};
use crescendo_domain::Id;
use crescendo_store::list_sql::{Placeholder, Term, statements};
use crescendo_store::{ArticleFilter, IdPage, Page, StoreResult, TimelineEntry};
use rusqlite::params_from_iter;
use rusqlite::types::Value;

/// The value a term binds.
fn value(term: Term) -> Value {
    match term {
        Term::Tag(tag) => Value::Text(tag),
        Term::Author(id) | Term::FavoritedBy(id) | Term::Feed(id) => Value::Integer(id),
    }
}

pub(crate) async fn list_article_ids(
    db: &Db,
    filter: &ArticleFilter,
    page: Page,
) -> StoreResult<IdPage> {
    let terms = Term::of(filter);
    let (ids_sql, count_sql) = statements(&terms, Placeholder::Question);
    let values: Vec<Value> = terms.into_iter().map(value).collect();
    db.read(move |c| {
        let window = [page.limit, page.offset].map(|n| Value::Integer(i64::from(n)));
        let ids = ids_from(c, &ids_sql, params_from_iter(values.iter().chain(&window)))?;
        let total = count(c, &count_sql, params_from_iter(&values))?;
        Ok(IdPage { ids, total })
    })
    .await
}

pub(crate) async fn popular_tags(db: &Db, limit: u32) -> StoreResult<Vec<String>> {
    db.read(move |c| {
        c.prepare_cached(
            "SELECT tag FROM article_tags GROUP BY tag ORDER BY COUNT(*) DESC, tag LIMIT ?1",
        )
        .and_then(|mut st| st.query_map([i64::from(limit)], |r| r.get(0))?.collect())
        .map_err(map_err)
    })
    .await
}

// No timelines here: every feed is merged on read.

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
