//! Article lists in SQL, for every engine: each filter is described once, as a [`Term`] —
//! what it binds and the condition it puts on the table that answers it — and
//! [`statements`] turns a filter's terms into the page and count statements, so a new filter
//! is a new term, not a new pair of statements per engine. The engines bind the values and
//! name their [`Placeholder`] syntax.

use crate::ArticleFilter;

/// One condition of a list, with the value it binds.
pub enum Term {
    /// Articles with this tag.
    Tag(String),
    /// Articles by this author.
    Author(i64),
    /// Articles this user favourited.
    FavoritedBy(i64),
    /// Articles by the users this user follows.
    Feed(i64),
}

/// How an engine writes the placeholder of the `i`th bound value.
#[derive(Clone, Copy, Debug)]
pub enum Placeholder {
    /// `$1`, `$2`, … (PostgreSQL).
    Dollar,
    /// `?1`, `?2`, … (SQLite).
    Question,
}

impl Placeholder {
    /// The placeholder of the `i`th value (from 1).
    fn at(self, i: usize) -> String {
        match self {
            Placeholder::Dollar => format!("${i}"),
            Placeholder::Question => format!("?{i}"),
        }
    }
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
    pub fn of(filter: &ArticleFilter) -> Vec<Term> {
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

/// The page statement and the count statement for `terms`, whose values are bound in order
/// at the placeholders 1, 2, … written as `placeholder` says; the page's limit and offset
/// come after them.
pub fn statements(terms: &[Term], placeholder: Placeholder) -> (String, String) {
    let clauses: Vec<Clause> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| t.clause(&placeholder.at(i + 1)))
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
            "SELECT {column} FROM {source} ORDER BY {column} DESC LIMIT {} OFFSET {}",
            placeholder.at(n + 1),
            placeholder.at(n + 2)
        ),
        format!("SELECT COUNT(*) FROM {source}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crescendo_domain::Id;

    #[test]
    fn each_filter_gives_its_page_and_count_statements_in_the_engines_syntax() {
        let tag_and_favorited = "articles WHERE id IN (SELECT article_id FROM article_tags WHERE tag = $1) \
                                 AND id IN (SELECT article_id FROM favorites WHERE user_id = $2)";
        let tag_and_author = "articles WHERE id IN (SELECT article_id FROM article_tags WHERE tag = ?1) \
                              AND author_id = ?2";
        let feed =
            "articles WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?1)";
        let cases = [
            // one keyed filter reads its own table
            (
                ArticleFilter::Tag("rust".into()),
                Placeholder::Dollar,
                "SELECT article_id FROM article_tags WHERE tag = $1 ORDER BY article_id DESC LIMIT $2 OFFSET $3".to_string(),
                "SELECT COUNT(*) FROM article_tags WHERE tag = $1".to_string(),
            ),
            (
                ArticleFilter::FavoritedBy(Id::from_i64(7)),
                Placeholder::Question,
                "SELECT article_id FROM favorites WHERE user_id = ?1 ORDER BY article_id DESC LIMIT ?2 OFFSET ?3".into(),
                "SELECT COUNT(*) FROM favorites WHERE user_id = ?1".into(),
            ),
            // every article has no condition
            (
                ArticleFilter::All,
                Placeholder::Dollar,
                "SELECT id FROM articles ORDER BY id DESC LIMIT $1 OFFSET $2".into(),
                "SELECT COUNT(*) FROM articles".into(),
            ),
            // the feed is a condition on articles
            (
                ArticleFilter::Feed(Id::from_i64(7)),
                Placeholder::Question,
                format!("SELECT id FROM {feed} ORDER BY id DESC LIMIT ?2 OFFSET ?3"),
                format!("SELECT COUNT(*) FROM {feed}"),
            ),
            // combined filters are conditions on articles, in bind order
            (
                ArticleFilter::Match {
                    tag: Some("rust".into()),
                    author: None,
                    favorited_by: Some(Id::from_i64(7)),
                },
                Placeholder::Dollar,
                format!("SELECT id FROM {tag_and_favorited} ORDER BY id DESC LIMIT $3 OFFSET $4"),
                format!("SELECT COUNT(*) FROM {tag_and_favorited}"),
            ),
            (
                ArticleFilter::Match {
                    tag: Some("rust".into()),
                    author: Some(Id::from_i64(3)),
                    favorited_by: None,
                },
                Placeholder::Question,
                format!("SELECT id FROM {tag_and_author} ORDER BY id DESC LIMIT ?3 OFFSET ?4"),
                format!("SELECT COUNT(*) FROM {tag_and_author}"),
            ),
        ];
        for (filter, placeholder, ids, count) in cases {
            assert_eq!(
                statements(&Term::of(&filter), placeholder),
                (ids, count),
                "{filter:?} with {placeholder:?}"
            );
        }
    }
}
