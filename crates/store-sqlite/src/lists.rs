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
use crescendo_store::list_sql::{Term, statements};
use crescendo_store::{ArticleFilter, IdPage, Page, StoreResult};
use rusqlite::params_from_iter;
use rusqlite::types::Value;

/// The value a term binds.
fn value(term: Term) -> Value {
    match term {
        Term::Tag(tag) => Value::Text(tag),
        Term::Author(id) | Term::FavoritedBy(id) | Term::Feed(id) => Value::Integer(id),
    }
}

/// SQLite's placeholder for the `i`th value.
fn placeholder(i: usize) -> String {
    format!("?{i}")
}

pub(crate) async fn list_article_ids(
    db: &Db,
    filter: &ArticleFilter,
    page: Page,
) -> StoreResult<IdPage> {
    let terms = Term::of(filter);
    let (ids_sql, count_sql) = statements(&terms, placeholder);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crescendo_domain::Id;

    fn sql(filter: ArticleFilter) -> (String, String) {
        statements(&Term::of(&filter), placeholder)
    }

    #[test]
    fn one_keyed_filter_reads_its_own_table() {
        assert_eq!(
            sql(ArticleFilter::FavoritedBy(Id::from_i64(7))),
            (
                "SELECT article_id FROM favorites WHERE user_id = ?1 ORDER BY article_id DESC LIMIT ?2 OFFSET ?3".into(),
                "SELECT COUNT(*) FROM favorites WHERE user_id = ?1".into()
            )
        );
    }

    #[test]
    fn the_feed_is_a_condition_on_articles() {
        let source =
            "articles WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1)";
        assert_eq!(
            sql(ArticleFilter::Feed(Id::from_i64(7))),
            (
                format!("SELECT id FROM {source} ORDER BY id DESC LIMIT ?2 OFFSET ?3"),
                format!("SELECT COUNT(*) FROM {source}")
            )
        );
    }

    #[test]
    fn combined_filters_are_conditions_on_articles_in_bind_order() {
        let (ids, count) = sql(ArticleFilter::Match {
            tag: Some("rust".into()),
            author: Some(Id::from_i64(3)),
            favorited_by: None,
        });
        let source = "articles WHERE id IN (SELECT article_id FROM article_tags WHERE tag = ?1) \
                      AND author_id = ?2";
        assert_eq!(
            ids,
            format!("SELECT id FROM {source} ORDER BY id DESC LIMIT ?3 OFFSET ?4")
        );
        assert_eq!(count, format!("SELECT COUNT(*) FROM {source}"));
    }
}
