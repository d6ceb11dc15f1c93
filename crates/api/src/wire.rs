//! Conduit's JSON shapes. Responses borrow from the application's views, so a cached
//! article is serialised without being copied.

use crescendo_app::{ArticleView, CommentView, ProfileView, UserView};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

const RFC3339_MS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-28T04:38:27.123Z`.
pub(crate) fn timestamp(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(RFC3339_MS).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

#[derive(Serialize)]
pub(crate) struct UserBody<'a> {
    pub user: User<'a>,
}

#[derive(Serialize)]
pub(crate) struct User<'a> {
    email: &'a str,
    token: &'a str,
    username: &'a str,
    bio: &'a str,
    image: &'a str,
}

impl<'a> From<&'a UserView> for UserBody<'a> {
    fn from(u: &'a UserView) -> Self {
        UserBody { user: User { email: &u.email, token: &u.token, username: &u.username, bio: &u.bio, image: &u.image } }
    }
}

#[derive(Serialize)]
pub(crate) struct Profile<'a> {
    username: &'a str,
    bio: &'a str,
    image: &'a str,
    following: bool,
}

impl<'a> From<&'a ProfileView> for Profile<'a> {
    fn from(p: &'a ProfileView) -> Self {
        Profile { username: &p.profile.username, bio: &p.profile.bio, image: &p.profile.image, following: p.following }
    }
}

#[derive(Serialize)]
pub(crate) struct ProfileBody<'a> {
    pub profile: Profile<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Article<'a> {
    slug: &'a str,
    title: &'a str,
    description: &'a str,
    /// Left out of list items, as spec 1.1.0 does.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    tag_list: &'a [String],
    created_at: String,
    updated_at: String,
    favorited: bool,
    favorites_count: i64,
    author: Profile<'a>,
}

impl<'a> Article<'a> {
    pub(crate) fn new(v: &'a ArticleView, with_body: bool) -> Self {
        let a = &v.article;
        Article {
            slug: &a.slug,
            title: &a.title,
            description: &a.description,
            body: with_body.then_some(a.body.as_str()),
            tag_list: &a.tags,
            created_at: timestamp(a.created_at),
            updated_at: timestamp(a.updated_at),
            favorited: v.favorited,
            favorites_count: a.favorites_count,
            author: Profile::from(&v.author),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ArticleBody<'a> {
    pub article: Article<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArticlesBody<'a> {
    pub articles: Vec<Article<'a>>,
    pub articles_count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Comment<'a> {
    id: i64,
    created_at: String,
    updated_at: String,
    body: &'a str,
    author: Profile<'a>,
}

impl<'a> From<&'a CommentView> for Comment<'a> {
    fn from(c: &'a CommentView) -> Self {
        Comment {
            id: c.comment.id.as_i64(),
            created_at: timestamp(c.comment.created_at),
            updated_at: timestamp(c.comment.updated_at),
            body: &c.comment.body,
            author: Profile::from(&c.author),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct CommentBody<'a> {
    pub comment: Comment<'a>,
}

#[derive(Serialize)]
pub(crate) struct CommentsBody<'a> {
    pub comments: Vec<Comment<'a>>,
}

#[derive(Serialize)]
pub(crate) struct TagsBody<'a> {
    pub tags: &'a [String],
}

// --- requests: every field optional, so a missing one is a field error, not a parse error

#[derive(Deserialize)]
pub(crate) struct NewUserBody {
    pub user: NewUser,
}

#[derive(Deserialize)]
pub(crate) struct NewUser {
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    pub user: Login,
}

#[derive(Deserialize)]
pub(crate) struct Login {
    pub email: Option<String>,
    pub password: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct UpdateUserBody {
    pub user: UpdateUser,
}

/// `null` for `bio` or `image` clears it; an absent field stays as it is.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Deserialize)]
pub(crate) struct UpdateUser {
    pub email: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub bio: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub image: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ArticleInputBody {
    pub article: ArticleInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArticleInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub body: Option<String>,
    pub tag_list: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub(crate) struct NewCommentBody {
    pub comment: NewComment,
}

#[derive(Deserialize)]
pub(crate) struct NewComment {
    pub body: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        assert_eq!(super::timestamp(1_764_304_707_123), "2025-11-28T04:38:27.123Z");
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00.000Z");
    }
}
