//! Conduit's JSON shapes. Responses borrow from the application's views, so a cached
//! article is serialised without being copied.

use crescendo_app::{ArticleView, CommentView, ProfileView, RenderSlot, UserView};
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
        UserBody {
            user: User {
                email: &u.email,
                token: &u.token,
                username: &u.username,
                bio: &u.bio,
                image: &u.image,
            },
        }
    }
}

// Articles, profiles and comments are written by hand from pre-rendered pieces: the
// shared part of each record (the same for every viewer) is rendered once per cached
// version (`Renders`), and each answer splices in the viewer's `favorited` and `following`.
// Field order inside an object is free in JSON; the shared fields come first.

#[derive(Serialize)]
struct ProfileShared<'a> {
    username: &'a str,
    bio: &'a str,
    image: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArticleShared<'a> {
    slug: &'a str,
    title: &'a str,
    description: &'a str,
    /// Left out of list items, as spec 1.1.0 does.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    tag_list: &'a [String],
    created_at: String,
    updated_at: String,
    favorites_count: i64,
    /// An addition to the spec: the cover image's URL, or `null`. Clients that do not know
    /// it ignore it.
    cover_image: Option<&'a str>,
}

/// `value` as a JSON object without its closing brace, so fields can follow.
fn open_object<T: Serialize>(value: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(value).expect("wire types serialise");
    debug_assert_eq!(v.last(), Some(&b'}'));
    v.pop();
    v
}

fn bool_bytes(b: bool) -> &'static [u8] {
    if b { b"true" } else { b"false" }
}

/// Appends a profile object: `{"username":…,"bio":…,"image":…,"following":…}`.
pub(crate) fn write_profile(out: &mut Vec<u8>, p: &ProfileView) {
    let shared = p.profile.renders().get_or_render(RenderSlot::Full, || {
        open_object(&ProfileShared {
            username: &p.profile.username,
            bio: &p.profile.bio,
            image: &p.profile.image,
        })
    });
    out.extend_from_slice(shared);
    out.extend_from_slice(b",\"following\":");
    out.extend_from_slice(bool_bytes(p.following));
    out.push(b'}');
}

/// Appends an article object; `full` includes the body.
pub(crate) fn write_article(out: &mut Vec<u8>, v: &ArticleView, full: bool) {
    let a = &v.article;
    let slot = if full {
        RenderSlot::Full
    } else {
        RenderSlot::Summary
    };
    let shared = a.renders().get_or_render(slot, || {
        open_object(&ArticleShared {
            slug: &a.slug,
            title: &a.title,
            description: &a.description,
            body: full.then_some(a.body.as_str()),
            tag_list: &a.tags,
            created_at: timestamp(a.created_at),
            updated_at: timestamp(a.updated_at),
            favorites_count: a.favorites_count,
            cover_image: (!a.cover_image.is_empty()).then_some(a.cover_image.as_str()),
        })
    });
    out.extend_from_slice(shared);
    out.extend_from_slice(b",\"favorited\":");
    out.extend_from_slice(bool_bytes(v.favorited));
    out.extend_from_slice(b",\"author\":");
    write_profile(out, &v.author);
    out.push(b'}');
}

/// Appends a comment object.
pub(crate) fn write_comment(out: &mut Vec<u8>, c: &CommentView) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(c.comment.id.as_i64().to_string().as_bytes());
    out.extend_from_slice(b",\"createdAt\":\"");
    out.extend_from_slice(timestamp(c.comment.created_at).as_bytes());
    out.extend_from_slice(b"\",\"updatedAt\":\"");
    out.extend_from_slice(timestamp(c.comment.updated_at).as_bytes());
    out.extend_from_slice(b"\",\"body\":");
    serde_json::to_writer(&mut *out, &c.comment.body).expect("strings serialise");
    out.extend_from_slice(b",\"author\":");
    write_profile(out, &c.author);
    out.push(b'}');
}

/// A JSON array of `items`, each written by `write`.
pub(crate) fn write_list<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut write: impl FnMut(&mut Vec<u8>, &T),
) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
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

/// `null` for `bio`, `image` or `coverImage` clears it; an absent field stays as it is.
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
    /// An addition to the spec: an upload's URL as the cover image (`null` or empty removes it).
    #[serde(default, deserialize_with = "nullable")]
    pub cover_image: Option<String>,
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
        assert_eq!(
            super::timestamp(1_764_304_707_123),
            "2025-11-28T04:38:27.123Z"
        );
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00.000Z");
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;
    use crescendo_app::{Cached, Profile};
    use crescendo_domain::Id;
    use crescendo_store::ArticleRecord;
    use std::sync::Arc;

    fn view(favorited: bool, following: bool) -> ArticleView {
        let article = ArticleRecord {
            id: Id::from_i64(1),
            author_id: Id::from_i64(2),
            slug: "a-1".into(),
            title: "Quote \" and \\ backslash".into(),
            description: "d".into(),
            body: "line\nbreak <b>".into(),
            tags: vec!["x".into(), "y".into()],
            created_at: 0,
            updated_at: 1,
            favorites_count: 3,
            cover_image: String::new(),
        };
        let profile = Profile {
            id: Id::from_i64(2),
            username: "jake".into(),
            bio: "".into(),
            image: "".into(),
        };
        ArticleView {
            article: Arc::new(Cached::new(article)),
            author: ProfileView {
                profile: Arc::new(Cached::new(profile)),
                following,
            },
            favorited,
        }
    }

    #[test]
    fn articles_render_as_valid_json_with_per_viewer_fields() {
        let v = view(true, false);
        let mut out = Vec::new();
        write_article(&mut out, &v, true);
        let j: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(j["title"], "Quote \" and \\ backslash");
        assert_eq!(j["body"], "line\nbreak <b>");
        assert_eq!(j["favorited"], true);
        assert_eq!(j["favoritesCount"], 3);
        assert_eq!(j["tagList"], serde_json::json!(["x", "y"]));
        assert_eq!(j["createdAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(
            j["author"],
            serde_json::json!({"username": "jake", "bio": "", "image": "", "following": false})
        );
        // the summary has no body; the same cached record renders both
        let mut out = Vec::new();
        write_list(&mut out, &[view(false, true)], |o, v| {
            write_article(o, v, false)
        });
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(j[0].get("body").is_none());
        assert_eq!(j[0]["author"]["following"], true);
    }
}
