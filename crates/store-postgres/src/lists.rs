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
use crescendo_store::list_sql::{Term, statements};
use crescendo_store::{ArticleFilter, IdPage, Page, StoreResult};

/// PostgreSQL's placeholder for the `i`th value.
fn placeholder(i: usize) -> String {
    format!("${i}")
}

pub(crate) async fn list_article_ids(
    db: &Db,
    filter: &ArticleFilter,
    page: Page,
) -> StoreResult<IdPage> {
    let terms = &Term::of(filter);
    let (ids_sql, count_sql) = &statements(terms, placeholder);
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
        statements(&Term::of(&filter), placeholder)
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
