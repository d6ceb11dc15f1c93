//! Article lists (everything, by tag, author or favouriting user, a user's feed, or several
//! of those at once), newest first with their totals; and the popular tags.
//!
//! Each filter is described once, as a [`Term`]: what it binds and the condition it puts
//! on the table that answers it. [`statements`] turns a filter's terms into the page and
//! count statements, so a new filter is a new term, not a new pair of statements.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::db::{Db, map_err};
use crescendo_domain::Id;
use crescendo_store::{ArticleFilter, IdPage, Page, StoreResult};

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

/// The page statement and the count statement for `terms`, whose values are `$1`, `$2`, …
/// in order; the page's limit and offset come after them.
fn statements(terms: &[Term]) -> (String, String) {
    let clauses: Vec<Clause> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| t.clause(&format!("${}", i + 1)))
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
            "SELECT {column} FROM {source} ORDER BY {column} DESC LIMIT ${} OFFSET ${}",
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
    let terms = &Term::of(filter);
    let (ids_sql, count_sql) = &statements(terms);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(filter: ArticleFilter) -> (String, String) {
        statements(&Term::of(&filter))
    }

    #[test]
    fn one_keyed_filter_reads_its_own_table() {
        assert_eq!(
            sql(ArticleFilter::Tag("rust".into())),
            (
                "SELECT article_id FROM article_tags WHERE tag = $1 ORDER BY article_id DESC LIMIT $2 OFFSET $3".into(),
                "SELECT COUNT(*) FROM article_tags WHERE tag = $1".into()
            )
        );
    }

    #[test]
    fn every_article_has_no_condition() {
        assert_eq!(
            sql(ArticleFilter::All),
            (
                "SELECT id FROM articles ORDER BY id DESC LIMIT $1 OFFSET $2".into(),
                "SELECT COUNT(*) FROM articles".into()
            )
        );
    }

    #[test]
    fn combined_filters_are_conditions_on_articles_in_bind_order() {
        let (ids, count) = sql(ArticleFilter::Match {
            tag: Some("rust".into()),
            author: None,
            favorited_by: Some(Id::from_i64(7)),
        });
        let source = "articles WHERE id IN (SELECT article_id FROM article_tags WHERE tag = $1) \
                      AND id IN (SELECT article_id FROM favorites WHERE user_id = $2)";
        assert_eq!(
            ids,
            format!("SELECT id FROM {source} ORDER BY id DESC LIMIT $3 OFFSET $4")
        );
        assert_eq!(count, format!("SELECT COUNT(*) FROM {source}"));
    }
}
