//! Behaviour every `Store` backend must show. Each case takes a fresh, empty store.
//!
//! A backend runs the whole suite from its tests with
//! `crescendo_store::store_conformance_tests!(async { (guard, Arc<dyn Store>) })`, where
//! `guard` keeps the backend's resources (a temp dir, a server) alive for the test.
//!
//! The cases panic with a message on the first difference, like assertions in any test.
//! They live in a module per resource; this one holds the macros that run them and the
//! fixtures they share.

mod articles;
mod comments;
mod lists;
mod outbox;
mod timelines;
mod uploads;
mod users;

pub use articles::{
    articles_round_trip_with_sorted_unique_tags, deleting_an_article_removes_what_hangs_on_it,
    equal_titles_get_distinct_slugs, favorites_are_counted_once, updating_a_title_moves_the_slug,
};
pub use comments::comments_round_trip;
pub use lists::{
    list_filters_select_exactly_their_articles, lists_are_newest_first_with_exact_totals,
    pages_neither_repeat_nor_skip, popular_tags_are_ordered_by_use,
};
pub use outbox::jobs_born_leased_wait_for_their_writer;
pub use timelines::{
    a_retried_feed_job_names_the_owners_it_wrote_for, followers_are_counted_and_paged_once_synced,
    timelines_hold_followed_authors_articles_once,
};
pub use uploads::uploads_come_with_their_job_and_settle_once;
pub use users::{
    follows_are_idempotent, taken_usernames_and_emails_conflict_and_write_nothing,
    update_user_changes_only_given_fields, users_round_trip,
};

use crate::*;
use crescendo_domain::Id;

/// Generates one `#[tokio::test]` per conformance case, each on a store made by `$make`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__store_conformance_cases!($make;
            users_round_trip,
            taken_usernames_and_emails_conflict_and_write_nothing,
            update_user_changes_only_given_fields,
            follows_are_idempotent,
            articles_round_trip_with_sorted_unique_tags,
            equal_titles_get_distinct_slugs,
            updating_a_title_moves_the_slug,
            lists_are_newest_first_with_exact_totals,
            pages_neither_repeat_nor_skip,
            list_filters_select_exactly_their_articles,
            favorites_are_counted_once,
            deleting_an_article_removes_what_hangs_on_it,
            comments_round_trip,
            popular_tags_are_ordered_by_use,
            uploads_come_with_their_job_and_settle_once,
            jobs_born_leased_wait_for_their_writer,
            followers_are_counted_and_paged_once_synced,
            timelines_hold_followed_authors_articles_once,
            a_retried_feed_job_names_the_owners_it_wrote_for
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $make.await;
                $crate::conformance::$case(&*store).await;
            }
        )*
    };
}

/// Creates a user named `name`, with an email made from the name and a fake password hash.
async fn user(s: &dyn Store, name: &str) -> UserRecord {
    s.create_user(NewUser {
        username: name.into(),
        email: format!("{}@example.com", name.to_lowercase()),
        password_hash: "$argon2id$fake".into(),
    })
    .await
    .expect("create user")
}

/// IDs are time-ordered at millisecond resolution; within one millisecond a backend may order
/// them by something else (PostgreSQL's `next_id` by a sequence that wraps). The cases space
/// their creations by 2 ms so that creation order is ID order on every backend.
async fn space() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

/// Creates an article by `author` (after [`space`]) with the given title and tags.
async fn article(s: &dyn Store, author: Id, title: &str, tags: &[&str]) -> ArticleRecord {
    space().await;
    s.create_article(NewArticle {
        author_id: author,
        title: title.into(),
        description: format!("about {title}"),
        body: format!("body of {title}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        cover_image: String::new(),
    })
    .await
    .expect("create article")
}

/// A page of `limit` articles from `offset`.
fn all(limit: u32, offset: u32) -> Page {
    Page { limit, offset }
}
