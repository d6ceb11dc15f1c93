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
use crescendo_store::{ArticleFilter, IdPage, Page, StoreResult};
use rusqlite::params_from_iter;
use rusqlite::types::Value;

/// One condition of a list, with the value it binds.
enum Term {
    /// Articles with this tag.
    Tag(String),
    /// Articles by this author.
    Author(i64),
    /// Articles this user favourited.
    FavoritedBy(i64),
    /// Articles by the users this user follows.
    Feed(i64),
}

/// Where a term's condition is answered.
enum Clause {
    /// A condition on `articles`.
    Articles(String),
    /// The rows of `table` (keyed by `article_id`, one per article at most) that meet `cond`.
    /// Alone, such a term is answered from its table and index without `articles`.
    Keyed { table: &'static str, cond: String },
}

impl Term {
    /// The terms of `filter`, in bind order; none for every article.
    fn of(filter: &ArticleFilter) -> Vec<Term> {
        match filter {
            ArticleFilter::All => Vec::new(),
            ArticleFilter::Tag(tag) => vec![Term::Tag(tag.clone())],
            ArticleFilter::Author(a) => vec![Term::Author(a.as_i64())],
            ArticleFilter::FavoritedBy(u) => vec![Term::FavoritedBy(u.as_i64())],
            ArticleFilter::Feed(u) => vec![Term::Feed(u.as_i64())],
            ArticleFilter::Match {
                tag,
                author,
                favorited_by,
            } => tag
                .iter()
                .map(|t| Term::Tag(t.clone()))
                .chain(author.map(|a| Term::Author(a.as_i64())))
                .chain(favorited_by.map(|u| Term::FavoritedBy(u.as_i64())))
                .collect(),
        }
    }

    /// The condition, with its value at placeholder `p`.
    fn clause(&self, p: &str) -> Clause {
        match self {
            Term::Tag(_) => Clause::Keyed {
                table: "article_tags",
                cond: format!("tag = {p}"),
            },
            Term::Author(_) => Clause::Articles(format!("author_id = {p}")),
            Term::FavoritedBy(_) => Clause::Keyed {
                table: "favorites",
                cond: format!("user_id = {p}"),
            },
            Term::Feed(_) => Clause::Articles(format!(
                "author_id IN (SELECT followee_id FROM follows WHERE follower_id = {p})"
            )),
        }
    }

    /// The value the condition binds.
    fn value(self) -> Value {
        match self {
            Term::Tag(tag) => Value::Text(tag),
            Term::Author(id) | Term::FavoritedBy(id) | Term::Feed(id) => Value::Integer(id),
        }
    }
}

impl Clause {
    /// The condition as one on `articles`.
    fn on_articles(self) -> String {
        match self {
            Clause::Articles(cond) => cond,
            Clause::Keyed { table, cond } => {
                format!("id IN (SELECT article_id FROM {table} WHERE {cond})")
            }
        }
    }
}

/// The page statement and the count statement for `terms`, whose values are `?1`, `?2`, …
/// in order; the page's limit and offset come after them.
fn statements(terms: &[Term]) -> (String, String) {
    let clauses: Vec<Clause> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| t.clause(&format!("?{}", i + 1)))
        .collect();
    let (column, table, conds) = if let [Clause::Keyed { table, cond }] = clauses.as_slice() {
        ("article_id", *table, vec![cond.clone()])
    } else {
        let conds = clauses.into_iter().map(Clause::on_articles).collect();
        ("id", "articles", conds)
    };
    let source = if conds.is_empty() {
        table.to_string()
    } else {
        format!("{table} WHERE {}", conds.join(" AND "))
    };
    let n = terms.len();
    (
        format!(
            "SELECT {column} FROM {source} ORDER BY {column} DESC LIMIT ?{} OFFSET ?{}",
            n + 1,
            n + 2
        ),
        format!("SELECT COUNT(*) FROM {source}"),
    )
}

pub(crate) async fn list_article_ids(
    db: &Db,
    filter: &ArticleFilter,
    page: Page,
) -> StoreResult<IdPage> {
    let terms = Term::of(filter);
    let (ids_sql, count_sql) = statements(&terms);
    let values: Vec<Value> = terms.into_iter().map(Term::value).collect();
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
        statements(&Term::of(&filter))
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
